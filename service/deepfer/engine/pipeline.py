"""One image's way through the service: bytes -> decode -> detect -> align -> 48x48 batch -> ONNX -> results.

``Pipeline.analyze`` (encoded bytes) is the whole story: it decodes, then takes the same path as
``Pipeline.analyze_image`` (an already decoded H x W x 3 uint8 BGR array, as a video frame or an image the
caller also draws on). The HTTP API and ``deepfer predict`` call the first, ``deepfer video`` the second.
Decode, detect and align run together in the locate stage (``deepfer.engine.locate``: threads of this process, or
worker processes with ``detect_processes``; OpenCV and ONNX Runtime release the GIL, so images run on every
core); classification goes through the ``DynamicBatcher``
here, so faces from concurrent requests share one ONNX run.

``Pipeline.reload`` swaps in new model files without downtime. The new files are loaded, contract-checked, proved on
a canary batch (``EmotionClassifier``) and warmed up beside the served ones, with a locator and a batcher of their
own; one attribute assignment then sends every new request to them. A request holds the models it started with until
it ends, so in-flight requests finish on the old models (and say so in their answer), and the old batcher stops once
its last request has left. A file that fails to load or fails the canary raises ``ModelLoadError`` and the old
models keep serving.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from deepfer.contract import INPUT_SHAPE, LABELS
from deepfer.engine.align import to_batch
from deepfer.engine.batching import DynamicBatcher
from deepfer.engine.classifier import EmotionClassifier, ModelRecord
from deepfer.engine.detect import FaceDetector
from deepfer.engine.locate import Located, Locator, Options, Source, load_detector, open_locator
from deepfer.errors import BadImage, ModelLoadError, Overloaded
from deepfer.metrics import Metrics
from deepfer.settings import Settings

log = logging.getLogger("deepfer")


@dataclass(frozen=True)
class FaceResult:
    """One face: box (x, y, width, height) in original pixels, landmarks 5 x 2 or None, 7 probabilities."""

    box: tuple[int, int, int, int]
    detection_score: float | None
    landmarks: NDArray[np.float32] | None
    probabilities: NDArray[np.float32]

    @property
    def emotion(self) -> str:
        return LABELS[int(np.argmax(self.probabilities))]


@dataclass(frozen=True)
class Analysis:
    """One image's answer: its size, its faces (largest first) and the classifier that produced them."""

    width: int
    height: int
    faces: list[FaceResult]
    model: ModelRecord  # a reload may have swapped the served model since


@dataclass
class _Served:
    """One loaded pair of models (the detector inside the locator) and the batcher feeding the classifier;
    ``users`` counts the requests holding it."""

    locator: Locator
    classifier: EmotionClassifier
    batcher: DynamicBatcher
    users: int = 0


class Pipeline:
    """The loaded models, the locator and the batcher, with ``analyze`` as the one entry point."""

    def __init__(self, served: _Served, *, settings: Settings, metrics: Metrics) -> None:
        self._served = served
        self._settings = settings
        self._metrics = metrics
        self._in_flight = 0
        self._reloading = asyncio.Lock()
        metrics.served_model(self.model.name, self.model.version, self.model.sha256)

    @property
    def classifier(self) -> EmotionClassifier:
        return self._served.classifier

    @property
    def model(self) -> ModelRecord:
        return self._served.classifier.model

    @property
    def failure(self) -> str | None:
        """Why this pipeline can no longer serve (its batcher's worker ended), or None."""
        return self._served.batcher.failure

    async def analyze(self, data: bytes, options: Options) -> Analysis:
        """Encoded image -> every face with its emotion probabilities, largest first (decoded on the worker)."""
        return await self._analyze(data, options)

    async def analyze_image(self, image: NDArray[np.uint8], options: Options) -> Analysis:
        """A decoded H x W x 3 uint8 BGR image -> the same answer ``analyze`` gives for its lossless encoding."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise BadImage(f"expected an H x W x 3 uint8 BGR array, got {image.dtype} {image.shape}")
        return await self._analyze(image, options)

    def admit(self) -> None:
        """Raise ``Overloaded`` while every image slot is taken.

        ``http.admission`` calls it before a request is routed or its body read, so a refused client costs its
        headers only; ``analyze`` calls it again, the check that holds.
        """
        if self._in_flight >= self._settings.max_concurrent_images:
            self._metrics.rejected.inc()
            raise Overloaded(
                f"{self._in_flight} images in progress (max_concurrent_images={self._settings.max_concurrent_images})",
                self._settings.retry_after_s,
            )

    async def _analyze(self, source: Source, options: Options) -> Analysis:
        self.admit()
        self._count_in_flight(+1)
        served = self._served  # this request's models from here to the end, whatever a reload does meanwhile
        served.users += 1
        # The slot is given back when the locate stage's work ends, not when this coroutine does: a request that
        # times out is cancelled here, but its worker keeps decoding, and that work must go on counting against
        # max_concurrent_images, or overload would pile up hidden work instead of answering 503.
        loop = asyncio.get_running_loop()
        work = served.locator.submit(source, options)  # decode (bytes only) -> detect -> align, off this process
        work.add_done_callback(lambda _: loop.call_soon_threadsafe(self._count_in_flight, -1))
        try:
            located = await asyncio.wrap_future(work)
            for stage, seconds in located.seconds.items():
                self._metrics.stage_seconds.labels(stage).observe(seconds)
            # k x 48x48x1 -> k x 7; the batcher times the queue wait and the run as stages of their own
            probabilities = await served.batcher.classify(to_batch(located.crops))
        except Overloaded:
            self._metrics.rejected.inc()
            raise
        finally:
            served.users -= 1
        self._metrics.faces_per_request.observe(len(located.crops))
        return Analysis(located.width, located.height, _results(located, probabilities), served.classifier.model)

    async def reload(self) -> ModelRecord:
        """Load the configured model files beside the served ones and swap them in; see the module docstring.

        Raises ``ModelLoadError`` (old models untouched) when a new file is missing, corrupt or off-contract.
        Reloads run one at a time; the call returns once the old models have served their last request.
        """
        async with self._reloading:
            try:
                detector, classifier = await asyncio.to_thread(_load_warm, self._settings)
            except ModelLoadError:
                self._metrics.reloads.labels("rejected").inc()
                await asyncio.to_thread(_give_back_freed_memory)  # what loading the refused file allocated
                raise
            locator = await asyncio.to_thread(_open_warm_locator, self._settings, detector)
            fresh = _Served(locator, classifier, await _start_batcher(classifier, self._settings, self._metrics))
            old, self._served = self._served, fresh
            self._metrics.served_model(self.model.name, self.model.version, self.model.sha256)
            self._metrics.reloads.labels("ok").inc()
            log.info("model reloaded", extra={"model_version": self.model.version, "model_sha256": self.model.sha256})
            await _retire(old)
            del old  # the last reference: the retired models are freed here, before their memory is given back
            await asyncio.to_thread(_give_back_freed_memory)
            return self.model

    async def close(self) -> None:
        """Stop the serving batcher, after any reload in progress (uvicorn has drained the requests by now)."""
        async with self._reloading:
            await self._served.batcher.stop()
            await asyncio.to_thread(self._served.locator.close)

    def _count_in_flight(self, change: int) -> None:
        self._in_flight += change
        self._metrics.images_in_flight.set(self._in_flight)

    def warm_up(self) -> None:
        """Run each model once at full size, so the first request does not pay for ORT's lazy initialisation."""
        self._served.locator.warm_up()
        _warm_up_classifier(self.classifier, self._settings.max_batch)


def load_models(settings: Settings) -> tuple[FaceDetector, EmotionClassifier]:
    """Both model wrappers; raises ModelLoadError naming the file when one is missing, corrupt or off-contract."""
    detector = load_detector(settings)
    classifier = EmotionClassifier(
        settings.classifier_path, provider=settings.execution_provider, intra_op_threads=settings.intra_op_threads
    )
    return detector, classifier


def _warm_up_classifier(classifier: EmotionClassifier, max_batch: int) -> None:
    for size in sorted({1, max_batch}):
        classifier.run(np.zeros((size, *INPUT_SHAPE), dtype=np.float32))


def _load_warm(settings: Settings) -> tuple[FaceDetector, EmotionClassifier]:
    """A reload's new models, warmed up before they take traffic (on a worker thread: this takes ~1 s)."""
    detector, classifier = load_models(settings)
    _warm_up_classifier(classifier, settings.max_batch)
    return detector, classifier


def _open_warm_locator(settings: Settings, detector: FaceDetector) -> Locator:
    """A reload's locator, its workers started and warm before it takes traffic."""
    locator = open_locator(settings, detector)
    locator.warm_up()
    return locator


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


async def _retire(served: _Served) -> None:
    """Stop a swapped-out batcher and locator once no request holds them (requests are bounded by their timeout)."""
    while served.users:
        await asyncio.sleep(0.01)
    await served.batcher.stop()
    await asyncio.to_thread(served.locator.close)


def _give_back_freed_memory() -> None:
    """Return the memory a reload freed to the operating system.

    glibc keeps freed memory in the arena of the thread that allocated it and trims only the top of each heap, and a
    model's buffers come from several threads (loader, warm-up, batcher, detector pool). ``python -m
    bench.reload_memory``, 100 reloads: RSS +341 MB before the retired models were freed at once (``DynamicBatcher.
    stop``), +41 MB after that alone, +0.7 MB with this trim too. Off glibc (musl, macOS) there is nothing to do.
    """
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None) if sys.platform.startswith("linux") else None
    if trim is not None:
        trim(0)


Models = tuple[FaceDetector, EmotionClassifier]


@asynccontextmanager
async def open_pipeline(settings: Settings, metrics: Metrics, models: Models | None = None) -> AsyncIterator[Pipeline]:
    """Load both models (failing fast with ModelLoadError) unless given loaded ones, start the batcher; stop it
    all on exit. ``deepfer serve`` loads them before uvicorn starts and hands them in, so they load once."""
    detector, classifier = models or load_models(settings)
    cv2.setNumThreads(settings.opencv_threads)  # process-wide; see Settings.opencv_threads
    locator = open_locator(settings, detector)
    served = _Served(locator, classifier, await _start_batcher(classifier, settings, metrics))
    pipeline = Pipeline(served, settings=settings, metrics=metrics)
    try:
        yield pipeline
    finally:
        await pipeline.close()


def _results(located: Located, probabilities: NDArray[np.float32]) -> list[FaceResult]:
    """Detections + probability rows -> results; boxes are rounded to whole pixels and clipped to the image."""
    results = []
    for found, row in zip(located.detections, probabilities, strict=True):
        if found is None:
            results.append(FaceResult((0, 0, located.width, located.height), None, None, row))
            continue
        x, y, width, height = found.box
        left, top = max(0, round(x)), max(0, round(y))
        right, bottom = min(located.width, round(x + width)), min(located.height, round(y + height))
        box = (left, top, max(0, right - left), max(0, bottom - top))
        results.append(FaceResult(box, round(found.score, 4), found.landmarks, row))
    return results
