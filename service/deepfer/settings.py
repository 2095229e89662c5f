"""Every tunable of the service, in one pydantic-settings class read from ``DEEPFER_*`` environment variables.

This is the only place a default lives. ``Settings()`` is built once at startup (by ``deepfer serve`` or a test)
and passed down; nothing reads the environment at import time. Names carry their units (``_ms``, ``_s``,
``_bytes``, ``_px``) so a value in an env file cannot be misread.

List settings (``DEEPFER_API_KEYS``, ``DEEPFER_CORS_ORIGINS``) accept either a JSON list or a comma-separated
string, because comma lists are what people type into docker-compose files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MODELS_DIR = Path(__file__).resolve().parent / "models"


def _split_list(value: object) -> object:
    """``'a,b'`` or ``'["a","b"]'`` -> ``['a', 'b']``; an empty string is an empty list."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [item.strip() for item in text.split(",") if item.strip()]


class Settings(BaseSettings):
    """Service configuration; see docs/limits.md (the settings table) for the reasoning behind each default."""

    model_config = SettingsConfigDict(env_prefix="DEEPFER_", extra="ignore", frozen=True)

    # Network. Loopback by default so a developer's `deepfer serve` is not exposed; the container sets 0.0.0.0.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes; each loads its own models and batcher")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = True
    graceful_shutdown_s: float = Field(20.0, gt=0, description="how long SIGTERM waits for in-flight requests")
    pre_drain_s: float = Field(
        0.0, ge=0, description="after SIGTERM, /readyz answers 503 and the service keeps serving this long, then drains"
    )
    # Connection limits (deepfer.server.connections). 16 KiB is h11's and nginx's default header allowance (4 x 8
    # KB buffers in nginx), far above what a client of this API sends (under 1 KB with an API key).
    max_header_bytes: int = Field(16_384, ge=1024, description="request line + headers; larger gets 431")
    # A real client sends its headers in one packet; 10 s is generous for a slow mobile link, and short next to the
    # minute a trickling client held a connection.
    header_timeout_s: float = Field(10.0, gt=0, description="headers must arrive within this; else 408")
    # Below the usual 1024 open-file limit, with room for the models and log files, and far above what the
    # service can work on at once (max_concurrent_images) plus nginx's keep-alive pool.
    max_connections: int = Field(512, ge=1, description="open connections; one beyond gets 503 and is closed")

    # Models.
    detector_path: Path = MODELS_DIR / "face_detection_yunet_2026may.onnx"
    # The int8 copy of emotion.onnx: PublicTest 69.8% against the float file's 69.7% (s3, docs/model.md), at about a
    # third of the CPU per face with AVX-512 VNNI (docs/performance.md); emotion.onnx is the float32 reference the
    # exporter checks.
    # A bare file name picks another shipped model (``_bare_names_are_shipped_models``).
    classifier_path: Path = MODELS_DIR / "emotion-int8.onnx"
    execution_provider: Literal["auto", "cpu", "cuda"] = "auto"
    # One: measured on 2 cores with the default two pipeline threads, those already keep the cores busy under load,
    # and a second classifier thread cost more CPU in hand-offs than it saved (bench/http_load.py, 16 clients:
    # 14.4 vs 16.1 ms of CPU per image).
    intra_op_threads: int = Field(
        1, ge=0, description="ONNX Runtime threads of the classifier's (batched) runs; 0 = one per core"
    )
    # Zero (threads) by measurement on the 2-core AVX2 VM of 2026-12-01, 16 clients: processes served 51.0 images/s
    # at 34.2 ms of CPU per image against the threads' 56.6 at 29.4 (bench.http_load; the pipe hand-off and the
    # extra interpreters cost more than the GIL did there, where one process with two threads reached 0.88 of
    # two processes: bench.ceiling). On 2026-12-03's AVX-512 host too: 1.31-1.36x the ceiling's CPU per image
    # against the threads' 1.18-1.28x (docs/performance.md). Processes isolate a crashing decoder (a 503, not a
    # dead replica), and pay where the GIL costs more (the former machine's 1x2 ceiling was 0.66 of 2x1).
    detect_processes: int = Field(
        0, ge=0, description="worker processes that decode/detect/align images; 0 = threads of the serving process"
    )
    pipeline_threads: int = Field(
        2, ge=1, description="with detect_processes=0: images decoded/detected in parallel (about one per core)"
    )
    pipeline_nice: int = Field(
        5, ge=0, le=19, description="how far below the batcher and event loop the locate stage runs (Linux)"
    )
    # One: the pipeline threads already run images in parallel, and OpenCV's own pool only added hand-offs:
    # `python -m bench.stages` measured 11.25 ms of CPU per image with OpenCV's default (two threads on the 2-core
    # Xeon of 2026-11-24) against 9.55 ms with one, at the same wall time even for a single request.
    opencv_threads: int = Field(1, ge=1, description="OpenCV's threads per call (process-wide); 1 = sequential")

    # Detection. Frame size, threshold and sharpness floor calibrated together on the public scenes
    # (bench/detection_sweep.py; the tables are in docs/model.md). 0.2 with the sharpness floor would find 7 faces
    # more (97.3% against 95.6% of 405), but also a false box at 0.28 on a grey frame that sharpness cannot tell.
    detection_score_threshold: float = Field(
        0.3, ge=0.0, le=1.0, description="the detector's floor: no face scoring below it is found, whatever min_score"
    )
    detection_nms_threshold: float = Field(0.3, ge=0.0, le=1.0)
    detection_max_side_px: int = Field(512, ge=64, description="larger images are downscaled before detection")
    max_faces: int = Field(32, ge=1, description="most faces returned per image (and the cap on the option)")
    # Variance of the Laplacian of the 48x48 face the classifier sees (deepfer.engine.align.sharpness). Colour
    # blobs the detector took for faces on the public scenes measure 2-16, their faces 179 and up, and 1 of
    # FER2013's 3,589 PublicTest faces is under 50 (a blank one): 50 drops the blobs with a wide margin both ways.
    min_face_sharpness: float = Field(
        50.0, ge=0.0, description="faces less sharp are dropped (the default of the min_sharpness option)"
    )

    # Dynamic batching and backpressure.
    max_batch: int = Field(32, ge=1, description="most faces in one classifier run")
    max_wait_ms: float = Field(2.0, ge=0.0, description="how long a batch waits for more faces once one arrives")
    queue_size: int = Field(256, ge=1, description="faces waiting for the classifier before requests get 503")
    max_concurrent_images: int = Field(
        64, ge=1, description="images decoded/detected at once; beyond it requests get 503 with Retry-After"
    )
    request_timeout_s: float = Field(10.0, gt=0)
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with 503")

    # Input limits.
    max_upload_bytes: int = Field(10_000_000, ge=1, description="per file, enforced while the body streams in")
    max_pixels: int = Field(40_000_000, ge=1, description="width x height, read from the header before decoding")
    # Decode work of a progressive JPEG is pixels x scans (every scan revisits every block). 10^9 is 40 Mpx with
    # 25 scans, 2.5x libjpeg's own progressive script at max_pixels. At 6000x6000, one OpenCV thread, CPU per warm
    # decode (2026-12-03, AMD EPYC with AVX-512): a 10-scan colour photo 0.36 s; a flat grey file 0.15 s, and
    # 0.19 s with 21 empty scans added (27, the most this allows); real content in 27 scans (jpegtran -scans)
    # 0.45-0.48 s. So the most decode work this admits is within 1.3x of a large real photo's.
    max_pixel_scans: int = Field(
        1_000_000_000, ge=1, description="width x height x JPEG scans, read from the markers before decoding"
    )
    max_batch_files: int = Field(16, ge=1, description="files in one /predict/batch request")
    # Every multipart part costs the parser Python work on the event loop whatever its size (10 MB of one-byte fields:
    # 2 s), and no client of this API sends a part besides its image files; 32 leaves room for a form's own fields.
    max_form_fields: int = Field(
        32, ge=0, description="multipart parts besides the image files in one request; one more gets 413"
    )

    # WS /stream (deepfer.server.stream). 4 MB holds a 1080p PNG (about 3 MB) and a 4K JPEG (1-2 MB); a camera's
    # 720p JPEG is 50-150 KB. Set as uvicorn's ws_max_size, so a bigger message is refused while it arrives.
    stream_max_message_bytes: int = Field(
        4_000_000, ge=1024, description="one binary frame of WS /stream; larger closes the stream with 1009"
    )
    # 30: a webcam's rate; frames sent faster are answered "dropped" and counted, never queued.
    stream_max_fps: float = Field(30.0, gt=0, description="frames/s one stream may send; the excess is dropped")
    # A token bucket of 4 frames refilled at stream_max_fps: a webcam driver that hands over frames in pairs, or a
    # network hiccup that delivers 100 ms of a 30 fps camera at once, loses nothing; a sender above the rate on
    # average loses the excess. A burst costs no memory: accepted frames share the one-frame mailbox.
    stream_burst_frames: int = Field(4, ge=1, description="frames one stream may send at once over stream_max_fps")
    stream_idle_timeout_s: float = Field(
        30.0, gt=0, description="a stream with no message this long is closed with 4408"
    )
    # The key is the first thing a client sends, right after the handshake: 5 s is many round trips of a slow
    # mobile link. Until it comes a socket holds no stream slot, only a connection (max_connections).
    stream_auth_timeout_s: float = Field(
        5.0, gt=0, description="with API keys, a stream whose key has not come this long after opening gets 4408"
    )
    # Pongs are written whatever the client reads (the websockets library answers each ping at once), so a client
    # that floods pings and reads nothing grew the process without bound. 1 MiB is 16 times the transport's own
    # high-water mark, which is all an app message may find waiting before it is sent.
    stream_max_unsent_bytes: int = Field(
        1_048_576, ge=65_536, description="bytes waiting for one stream's client to read; past it the stream gets 1008"
    )
    # Each open stream holds a tracker and at most one frame in flight; 64 is max_concurrent_images.
    stream_max_connections: int = Field(64, ge=1, description="open streams per process; one more is closed with 1013")

    # deepfer video's tracks (deepfer.tracking.tracker, deepfer.video.cuts), measured by bench/video_tracks.py on
    # shots made from the public scenes (docs/video.md). The live stream keeps naming people on their
    # third frame.
    video_min_track_s: float = Field(
        0.3, ge=0, description="a face gets a track ID once tracked this long (all frames in a row)"
    )
    video_min_track_score: float = Field(
        0.5, ge=0, le=1, description="...and once its mean detection score reaches this"
    )
    video_scene_cut_change: float = Field(
        0.15, gt=0, le=1, description="(1 - r) / 2 of two frames' grey thumbnails at which a scene cut is seen"
    )

    # Metrics: by default /metrics is on the API port, behind the API keys. A scrape port serves it there too,
    # with no key, for scrapers that cannot send one (Kubernetes' prometheus.io annotations); keep it in-cluster.
    metrics_port: int | None = Field(None, ge=1, le=65535, description="open /metrics listener; none if unset")

    # Security.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # POST /admin/reload needs "Authorization: Bearer <admin_token>"; unset, the route answers 403.
    admin_token: SecretStr | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # /docs, /redoc and /openapi.json describe every route to whoever asks; with keys set they are closed unless
    # opened on purpose. None: open without keys, closed with them.
    api_docs: bool | None = None

    @property
    def docs_open(self) -> bool:
        return self.api_docs if self.api_docs is not None else not self.api_keys

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _lists_from_env(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("detector_path", "classifier_path", mode="before")
    @classmethod
    def _bare_names_are_shipped_models(cls, value: object) -> object:
        """A bare file name (``emotion-ensemble-int8.onnx``) names a model shipped in the package, wherever it is
        installed (a wheel, the image); a path with a directory (``./mine.onnx``) is taken as given. Read from the
        text as written: ``Path("./mine.onnx")`` would already have dropped the ``./`` that says "here"."""
        if isinstance(value, str) and value and "/" not in value:
            return MODELS_DIR / value
        return value

    @model_validator(mode="after")
    def _queue_holds_one_image(self) -> Settings:
        """An image with ``max_faces`` faces must fit the queue, or it would get 503 (and retry) forever."""
        if self.queue_size < self.max_faces:
            raise ValueError(f"queue_size ({self.queue_size}) must be at least max_faces ({self.max_faces})")
        return self

    @model_validator(mode="after")
    def _one_process_per_scrape_port(self) -> Settings:
        """Each worker would bind the scrape port, and all but one would fail."""
        if self.metrics_port is not None and self.workers > 1:
            raise ValueError("metrics_port needs workers=1: run more replicas instead of more workers")
        return self
