"""One image's way through the service: bytes -> decode -> detect -> align -> 48x48 batch -> ONNX -> results.

``Pipeline.analyze`` (encoded bytes) is the whole story: it decodes, then takes the same path as
``Pipeline.analyze_image`` (an already decoded H x W x 3 uint8 BGR array, as a video frame or an image the
caller also draws on). The HTTP API and ``deepfer predict`` call the first, ``deepfer video`` the second.
Decode, detect and align run together on a worker thread (OpenCV and ONNX Runtime release the GIL, so two
images really run on two cores); classification goes through the ``DynamicBatcher`` so faces from concurrent
requests share one ONNX run.

``Pipeline.reload`` swaps in new model files without downtime. The new files are loaded, contract-checked and
warmed up beside the served ones, with a batcher of their own; one attribute assignment then sends every new
request to them. A request holds the models it started with until it ends, so in-flight requests finish on
the old models (and say so in their answer), and the old batcher stops once its last request has left. A file
that fails to load raises ``ModelLoadError`` and the old models keep serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from deepfer.batching import DynamicBatcher
from deepfer.classifier import EmotionClassifier, ModelRecord
from deepfer.contract import INPUT_SHAPE, LABELS
from deepfer.decode import decode
from deepfer.detect import Detection, FaceDetector
from deepfer.errors import BadImage, ModelLoadError, Overloaded
from deepfer.metrics import Metrics
from deepfer.preprocess import align_face, face_from_crop, to_batch
from deepfer.settings import Settings

log = logging.getLogger("deepfer")


@dataclass(frozen=True)
class Options:
    """Per-request choices. ``detect=False`` treats the whole image as one FER-framed face."""

    detect: bool = True
    max_faces: int = 32
    min_face_size: int = 0  # pixels, the smaller side of the detected box


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


@dataclass(frozen=True)
class _Located:
    """An image's faces before classification: detections (None for detect=false) and their 48x48 crops."""

    width: int
    height: int
    detections: list[Detection | None]
    crops: list[NDArray[np.uint8]]


@dataclass
class _Served:
    """One loaded pair of models and the batcher feeding its classifier; ``users`` counts requests holding it."""

    detector: FaceDetector
    classifier: EmotionClassifier
    batcher: DynamicBatcher
    users: int = 0


class Pipeline:
    """The loaded models, the batcher and the worker threads, with ``analyze`` as the one entry point."""

    def __init__(self, served: _Served, executor: ThreadPoolExecutor, *, settings: Settings, metrics: Metrics) -> None:
        self._served = served
        self._executor = executor
        self._settings = settings
        self._metrics = metrics
        self._in_flight = 0
        self._reloading = asyncio.Lock()
        metrics.served_model(self.model.name, self.model.version, self.model.sha256)

    @property
    def detector(self) -> FaceDetector:
        return self._served.detector

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

    async def _analyze(self, source: bytes | NDArray[np.uint8], options: Options) -> Analysis:
        if self._in_flight >= self._settings.max_concurrent_images:
            self._metrics.rejected.inc()
            raise Overloaded(
                f"{self._in_flight} images in progress (max_concurrent_images={self._settings.max_concurrent_images})",
                self._settings.retry_after_s,
            )
        self._count_in_flight(+1)
        served = self._served  # this request's models from here to the end, whatever a reload does meanwhile
        served.users += 1
        # The slot is given back when the pipeline thread's work ends, not when this coroutine does: a request that
        # times out is cancelled here, but the thread keeps decoding, and that work must go on counting against
        # max_concurrent_images, or overload would pile up hidden work instead of answering 503.
        loop = asyncio.get_running_loop()
        work = self._executor.submit(self.locate, source, options, served.detector)
        work.add_done_callback(lambda _: loop.call_soon_threadsafe(self._count_in_flight, -1))
        try:
            located = await asyncio.wrap_future(work)
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
                raise
            fresh = _Served(detector, classifier, await _start_batcher(classifier, self._settings, self._metrics))
            old, self._served = self._served, fresh
            self._metrics.served_model(self.model.name, self.model.version, self.model.sha256)
            self._metrics.reloads.labels("ok").inc()
            log.info("model reloaded", extra={"model_version": self.model.version, "model_sha256": self.model.sha256})
            await _retire(old)
            return self.model

    async def close(self) -> None:
        """Stop the serving batcher, after any reload in progress (uvicorn has drained the requests by now)."""
        async with self._reloading:
            await self._served.batcher.stop()

    def _count_in_flight(self, change: int) -> None:
        self._in_flight += change
        self._metrics.images_in_flight.set(self._in_flight)

    def locate(
        self, source: bytes | NDArray[np.uint8], options: Options, detector: FaceDetector | None = None
    ) -> _Located:
        """Decode (bytes only), detect and align on the calling (worker) thread -> faces as 48x48 uint8 crops."""
        if isinstance(source, bytes):
            with self._timed("decode"):
                image = decode(
                    source, max_pixels=self._settings.max_pixels, max_pixel_scans=self._settings.max_pixel_scans
                )  # -> H x W x 3 uint8 BGR
        else:
            image = source
        height, width = image.shape[:2]
        if not options.detect:
            return _Located(width, height, [None], [face_from_crop(image)])
        with self._timed("detect"):
            detections = _select((detector or self.detector).detect(image), options)  # largest first
        with self._timed("align"):
            crops = [align_face(image, found.box, found.landmarks) for found in detections]  # 48x48 uint8 each
        return _Located(width, height, list(detections), crops)

    def warm_up(self) -> None:
        """Run each model once at full size, so the first request does not pay for ORT's lazy initialisation."""
        _warm_up(self.detector, self.classifier, self._settings.max_batch)

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._metrics.stage_seconds.labels(stage).observe(time.perf_counter() - start)


def load_models(settings: Settings) -> tuple[FaceDetector, EmotionClassifier]:
    """Both model wrappers; raises ModelLoadError naming the file when one is missing, corrupt or off-contract."""
    detector = FaceDetector(
        settings.detector_path,
        score_threshold=settings.detection_score_threshold,
        nms_threshold=settings.detection_nms_threshold,
        max_side_px=settings.detection_max_side_px,
        provider=settings.execution_provider,
        # One thread per detection: images already run in parallel on ``pipeline_threads`` workers.
        intra_op_threads=1,
    )
    classifier = EmotionClassifier(
        settings.classifier_path, provider=settings.execution_provider, intra_op_threads=settings.intra_op_threads
    )
    return detector, classifier


def _warm_up(detector: FaceDetector, classifier: EmotionClassifier, max_batch: int) -> None:
    detector.detect(np.zeros((480, 640, 3), dtype=np.uint8))
    for size in sorted({1, max_batch}):
        classifier.run(np.zeros((size, *INPUT_SHAPE), dtype=np.float32))


def _load_warm(settings: Settings) -> tuple[FaceDetector, EmotionClassifier]:
    """A reload's new models, warmed up before they take traffic (on a worker thread: this takes ~1 s)."""
    detector, classifier = load_models(settings)
    _warm_up(detector, classifier, settings.max_batch)
    return detector, classifier


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
    """Stop a swapped-out batcher once no request holds it; the requests themselves are bounded by their timeout."""
    while served.users:
        await asyncio.sleep(0.01)
    await served.batcher.stop()


Models = tuple[FaceDetector, EmotionClassifier]


@asynccontextmanager
async def open_pipeline(settings: Settings, metrics: Metrics, models: Models | None = None) -> AsyncIterator[Pipeline]:
    """Load both models (failing fast with ModelLoadError) unless given loaded ones, start the batcher; stop it
    all on exit. ``deepfer serve`` loads them before uvicorn starts and hands them in, so they load once."""
    detector, classifier = models or load_models(settings)
    cv2.setNumThreads(settings.opencv_threads)  # process-wide; see Settings.opencv_threads
    executor = ThreadPoolExecutor(
        max_workers=settings.pipeline_threads,
        thread_name_prefix="deepfer-pipeline",
        initializer=_lower_thread_priority,
        initargs=(settings.pipeline_nice,),
    )
    served = _Served(detector, classifier, await _start_batcher(classifier, settings, metrics))
    pipeline = Pipeline(served, executor, settings=settings, metrics=metrics)
    try:
        yield pipeline
    finally:
        await pipeline.close()
        executor.shutdown(wait=True)


def _lower_thread_priority(nice: int) -> None:
    """Run this pipeline thread ``nice`` steps below the event loop and the batcher.

    Decode + detect is the bulk of the CPU and waits in a FIFO queue anyway; the batcher and the event loop are
    short steps that every request passes through. At equal priority they queue behind detection for a core,
    and that wait made the p99 (see the README's Performance section for the measurement). Linux only: other
    systems have no per-thread nice. A sandbox that forbids it costs the latency gain, never a request.
    """
    if not nice or not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        # Relative to what the thread inherited: the process itself may already run niced.
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + nice))
    except OSError as error:
        log.warning("pipeline threads keep their priority: %s", error)


def _select(detections: list[Detection], options: Options) -> list[Detection]:
    """Drop faces smaller than ``min_face_size``, order largest first, keep at most ``max_faces``."""
    kept = [found for found in detections if min(found.box[2], found.box[3]) >= options.min_face_size]
    kept.sort(key=lambda found: found.area, reverse=True)
    return kept[: options.max_faces]


def _results(located: _Located, probabilities: NDArray[np.float32]) -> list[FaceResult]:
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
