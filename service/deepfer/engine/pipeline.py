"""One image's way through the service: bytes -> decode -> detect -> align -> 48x48 batch -> ONNX -> results.

Read it top to bottom: ``locate`` is the first half (decode, detect, align: one image, on a worker of
``deepfer.engine.workers``, threads of this process or ``detect_processes`` worker processes; OpenCV and ONNX
Runtime release the GIL, so images run on every core); ``Pipeline.analyze`` sends an image there and its faces on
to the ``DynamicBatcher``, so faces of concurrent requests share one classifier run, then ``results`` puts boxes
and probabilities together. ``Pipeline.analyze_image`` takes an already decoded H x W x 3 uint8 BGR array (a video
frame, or an image the caller also draws on) down the same path. The HTTP API and ``deepfer predict`` call the
first, ``deepfer video`` the second.

``Pipeline.reload`` swaps in new model files without downtime. The new files are loaded, contract-checked, proved
on a canary batch (``EmotionClassifier``) and warmed up beside the served ones, with workers and a batcher of their
own (``deepfer.engine.models``); one attribute assignment then sends every new request to them. A request holds the
models it started with until it ends, so in-flight requests finish on the old models (and say so in their answer),
and the old batcher stops once its last request has left. A file that fails to load or fails the canary raises
``ModelLoadError`` and the old models keep serving.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from numpy.typing import NDArray

from deepfer.contract import LABELS
from deepfer.engine import models
from deepfer.engine.align import align_face, face_from_crop, sharpness, to_batch
from deepfer.engine.capacity import Slots
from deepfer.engine.classifier import EmotionClassifier, ModelRecord
from deepfer.engine.decode import decode
from deepfer.engine.detect import Detection, FaceDetector
from deepfer.errors import BadImage, ModelLoadError, Overloaded
from deepfer.metrics import Metrics
from deepfer.settings import Settings

log = logging.getLogger("deepfer")
Source = bytes | NDArray[np.uint8]  # encoded image, or H x W x 3 uint8 BGR


@dataclass(frozen=True)
class Options:
    """Per-request choices. ``detect=False`` treats the whole image as one FER-framed face."""

    detect: bool = True
    max_faces: int = 32
    min_face_size: int = 0  # pixels, the smaller side of the detected box
    min_score: float = 0.0  # detection score 0..1, over the detector's own floor (detection_score_threshold)
    min_sharpness: float | None = None  # of the 48x48 face (align.sharpness); None: settings.min_face_sharpness


@dataclass(frozen=True)
class Quality:
    """How readable a face is, for clients to filter on: ``size_px``, the smaller side of the detected box in
    whole pixels of the original image (what ``min_face_size`` compares), and ``sharpness`` of its 48x48 face."""

    size_px: int
    sharpness: float


@dataclass(frozen=True)
class Located:
    """An image's faces before classification: detections (None for detect=false), their 48x48 uint8 crops and
    qualities, and the seconds each stage took (recorded by the caller, which owns the metrics)."""

    width: int
    height: int
    detections: list[Detection | None]
    crops: list[NDArray[np.uint8]]
    qualities: list[Quality]
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FaceResult:
    """One face: box (x, y, width, height) in original pixels, landmarks 5 x 2 or None, 7 probabilities."""

    box: tuple[int, int, int, int]
    detection_score: float | None
    landmarks: NDArray[np.float32] | None
    probabilities: NDArray[np.float32]
    quality: Quality

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


def locate(source: Source, options: Options, detector: FaceDetector, settings: Settings) -> Located:
    """Decode (bytes only), detect and align on the calling worker -> the image's faces, largest first.

    Faces too small or scored too low are dropped before alignment, faces too blurred after it (sharpness is
    measured on the aligned face), and only then is the list cut to ``max_faces``, so a blob never takes the
    place of a face. ``detect=False`` keeps its one face whatever its quality: the caller said it is a face.
    """
    seconds: dict[str, float] = {}
    if isinstance(source, bytes):
        with _timed(seconds, "decode"):  # bytes -> H x W x 3 uint8 BGR, refused from its header when too costly
            image = decode(source, max_pixels=settings.max_pixels, max_pixel_scans=settings.max_pixel_scans)
    else:
        image = source
    height, width = image.shape[:2]
    if not options.detect:
        face = face_from_crop(image)
        return Located(width, height, [None], [face], [Quality(min(width, height), sharpness(face))], seconds)
    with _timed(seconds, "detect"):
        candidates = _select(detector.detect(image), options)
    with _timed(seconds, "align"):
        crops = [align_face(image, found.box, found.landmarks) for found in candidates]  # 48x48 uint8 each
        # floor: an integer min_face_size N keeps exactly the faces whose size_px >= N
        qualities = [
            Quality(math.floor(min(found.box[2], found.box[3])), sharpness(crop))
            for found, crop in zip(candidates, crops, strict=True)
        ]
    floor = settings.min_face_sharpness if options.min_sharpness is None else options.min_sharpness
    kept = [index for index, quality in enumerate(qualities) if quality.sharpness >= floor][: options.max_faces]
    return Located(
        width,
        height,
        [candidates[index] for index in kept],
        [crops[index] for index in kept],
        [qualities[index] for index in kept],
        seconds,
    )


def results(located: Located, probabilities: NDArray[np.float32]) -> list[FaceResult]:
    """Detections + probability rows -> results; boxes are rounded to whole pixels and clipped to the image."""
    answers = []
    for found, row, quality in zip(located.detections, probabilities, located.qualities, strict=True):
        if found is None:
            answers.append(FaceResult((0, 0, located.width, located.height), None, None, row, quality))
            continue
        x, y, width, height = found.box
        left, top = max(0, round(x)), max(0, round(y))
        right, bottom = min(located.width, round(x + width)), min(located.height, round(y + height))
        box = (left, top, max(0, right - left), max(0, bottom - top))
        answers.append(FaceResult(box, round(found.score, 4), found.landmarks, row, quality))
    return answers


class Pipeline:
    """The served models and the image gate, with ``analyze`` as the one entry point."""

    def __init__(self, served: models.Served, *, settings: Settings, metrics: Metrics) -> None:
        self._served = served
        self._settings = settings
        self._metrics = metrics
        self._reloading = asyncio.Lock()
        self.images = Slots(
            "images in progress",
            settings.max_concurrent_images,
            setting="max_concurrent_images",
            retry_after_s=settings.retry_after_s,
            on_change=metrics.images_in_flight.set,
            on_refused=metrics.rejected.inc,
        )
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

    async def _analyze(self, source: Source, options: Options) -> Analysis:
        self.images.take()
        served = self._served  # this request's models from here to the end, whatever a reload does meanwhile
        served.users += 1
        # The slot is given back when the worker's work ends, not when this coroutine does: a request that times
        # out is cancelled here, but its worker keeps decoding, and that work must go on counting (capacity.py).
        loop = asyncio.get_running_loop()
        work = served.locator.submit(partial(locate, source, options))
        work.add_done_callback(lambda _: loop.call_soon_threadsafe(self.images.give_back))
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
        return Analysis(located.width, located.height, results(located, probabilities), served.classifier.model)

    async def reload(self) -> ModelRecord:
        """Load the configured model files beside the served ones and swap them in; see the module docstring.

        Raises ``ModelLoadError`` (old models untouched) when a new file is missing, corrupt or off-contract.
        Reloads run one at a time; the call returns once the old models have served their last request.
        """
        async with self._reloading:
            try:
                loaded = await asyncio.to_thread(models.load_models, self._settings)
            except ModelLoadError:
                self._metrics.reloads.labels("rejected").inc()
                await asyncio.to_thread(models.give_back_freed_memory)  # what loading the refused file allocated
                raise
            fresh = await models.start_served(self._settings, self._metrics, loaded, warm=True)
            old, self._served = self._served, fresh
            self._metrics.served_model(self.model.name, self.model.version, self.model.sha256)
            self._metrics.reloads.labels("ok").inc()
            log.info("model reloaded", extra={"model_version": self.model.version, "model_sha256": self.model.sha256})
            await models.retire(old)
            del old  # the last reference: the retired models are freed here, before their memory is given back
            await asyncio.to_thread(models.give_back_freed_memory)
            return self.model

    async def close(self) -> None:
        """Stop the serving batcher, after any reload in progress (uvicorn has drained the requests by now)."""
        async with self._reloading:
            await models.stop(self._served)

    def warm_up(self) -> None:
        """Run each model once at full size, so the first request does not pay for ORT's lazy initialisation."""
        self._served.warm_up(self._settings.max_batch)


@asynccontextmanager
async def open_pipeline(
    settings: Settings, metrics: Metrics, loaded: models.Models | None = None
) -> AsyncIterator[Pipeline]:
    """Load both models (failing fast with ModelLoadError) unless given loaded ones, start the batcher; stop it
    all on exit. ``deepfer serve`` loads them before uvicorn starts and hands them in, so they load once."""
    served = await models.start_served(settings, metrics, loaded or models.load_models(settings))
    pipeline = Pipeline(served, settings=settings, metrics=metrics)
    try:
        yield pipeline
    finally:
        await pipeline.close()


def _select(detections: list[Detection], options: Options) -> list[Detection]:
    """Drop faces smaller than ``min_face_size`` or scored below ``min_score``, order largest first."""
    kept = [
        found
        for found in detections
        if min(found.box[2], found.box[3]) >= options.min_face_size and found.score >= options.min_score
    ]
    kept.sort(key=lambda found: found.area, reverse=True)
    return kept


@contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = time.perf_counter() - start
