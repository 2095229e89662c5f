"""The served models as one unit: both wrappers, the workers running the detector, the batcher feeding the
classifier. Loaded, warmed and retired as a whole, so a reload (``Pipeline.reload``) swaps them in one assignment.
"""

from __future__ import annotations

import asyncio
import ctypes
import sys
from dataclasses import dataclass

import cv2
import numpy as np

from deepfer.contract import INPUT_SHAPE
from deepfer.engine.batching import DynamicBatcher
from deepfer.engine.classifier import EmotionClassifier
from deepfer.engine.detect import FaceDetector
from deepfer.engine.workers import Locator, load_detector, open_locator
from deepfer.metrics import Metrics
from deepfer.settings import Settings

Models = tuple[FaceDetector, EmotionClassifier]


@dataclass
class Served:
    """One loaded pair of models (the detector inside the locator) and the batcher feeding the classifier;
    ``users`` counts the requests holding it."""

    locator: Locator
    classifier: EmotionClassifier
    batcher: DynamicBatcher
    users: int = 0

    def warm_up(self, max_batch: int) -> None:
        """Run each model once at full size, so the first request does not pay for ORT's lazy initialisation."""
        self.locator.warm_up()
        warm_up_classifier(self.classifier, max_batch)


def load_models(settings: Settings) -> Models:
    """Both model wrappers; raises ModelLoadError naming the file when one is missing, corrupt or off-contract."""
    detector = load_detector(settings)
    classifier = EmotionClassifier(
        settings.classifier_path, provider=settings.execution_provider, intra_op_threads=settings.intra_op_threads
    )
    return detector, classifier


def warm_up_classifier(classifier: EmotionClassifier, max_batch: int) -> None:
    for size in sorted({1, max_batch}):
        classifier.run(np.zeros((size, *INPUT_SHAPE), dtype=np.float32))


async def start_served(settings: Settings, metrics: Metrics, models: Models, *, warm: bool = False) -> Served:
    """The workers and the batcher around loaded models; ``warm`` (a reload's) runs each before it takes traffic.

    The blocking parts (worker start-up, warm-up: ~1 s) run on a thread, so the event loop keeps serving.
    """
    detector, classifier = models
    cv2.setNumThreads(settings.opencv_threads)  # process-wide; see Settings.opencv_threads
    locator = await asyncio.to_thread(open_locator, settings, detector)
    served = Served(locator, classifier, await _start_batcher(classifier, settings, metrics))
    if warm:
        await asyncio.to_thread(served.warm_up, settings.max_batch)
    return served


async def _start_batcher(classifier: EmotionClassifier, settings: Settings, metrics: Metrics) -> DynamicBatcher:
    batcher = DynamicBatcher(
        classifier.run,
        max_batch=settings.max_batch,
        max_wait_ms=settings.max_wait_ms,
        queue_size=settings.queue_size,
        retry_after_s=settings.retry_after_s,
        on_batch=metrics.batch_size.observe,
        on_queue_depth=metrics.queue_depth.set,
        on_wait=metrics.stage_seconds.labels("queue_wait").observe,
        on_run=metrics.stage_seconds.labels("classify").observe,
    )
    await batcher.start()
    return batcher


async def stop(served: Served) -> None:
    await served.batcher.stop()
    await asyncio.to_thread(served.locator.close)


async def retire(served: Served) -> None:
    """Stop swapped-out models once no request holds them (requests are bounded by their timeout)."""
    while served.users:
        await asyncio.sleep(0.01)
    await stop(served)


def give_back_freed_memory() -> None:
    """Return the memory a reload freed to the operating system.

    glibc keeps freed memory in the arena of the thread that allocated it and trims only the top of each heap, and a
    model's buffers come from several threads (loader, warm-up, batcher, detector pool). ``python -m
    bench.reload_memory``, 100 reloads (2026-12-03, 2-core AVX-512 host): RSS +341 MB before the retired models
    were freed at once (``DynamicBatcher.stop``), +41 MB after that alone, +0.7 MB with this trim too. Off glibc
    (musl, macOS) there is nothing to do.
    """
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None) if sys.platform.startswith("linux") else None
    if trim is not None:
        trim(0)
