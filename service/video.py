"""Video analysis: every N-th frame of a file through the face pipeline, written as CSV or JSON lines.

The story of one run, top to bottom in ``analyse_video``:
    open the video -> for each frame: sampled? analyse it (local pipeline or a server) -> write its faces ->
    optionally draw the latest faces onto the frame for the annotated copy -> after the loop, the plot.

Frames that are not sampled are skipped with ``grab()`` (no colour conversion, no copy) unless an annotated
copy is asked for; that copy keeps every source frame, so it plays at the source's speed, and holds each
frame's overlay until the next analysed frame replaces it.

Analysers return the API's own ``PredictResponse``, so a row is the same whether the frame went through the
local pipeline or over HTTP with ``--url``; both see the frame's exact pixels (lossless encoding).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Protocol

import cv2
import httpx
import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from service.client import AsyncClient, DeepFERClientError
from service.contract import LABELS
from service.errors import DeepFERError
from service.metrics import Metrics
from service.pipeline import Options, open_pipeline
from service.schemas import Face, PredictResponse
from service.settings import Settings

#: One BGR frame (H x W x 3 uint8) -> the API's answer for it (faces largest first), locally or over HTTP.
FrameAnalyser = Callable[[NDArray[np.uint8]], Awaitable[PredictResponse]]

CSV_SUFFIXES: Final = frozenset({".csv"})
JSONL_SUFFIXES: Final = frozenset({".jsonl", ".ndjson", ".json"})

#: BGR colours per emotion, the same palette as the browser demo, so a plot and the page read alike.
EMOTION_BGR: Final[dict[str, tuple[int, int, int]]] = {
    "angry": (40, 39, 214),
    "disgust": (44, 160, 44),
    "fear": (189, 103, 148),
    "happy": (0, 168, 230),
    "sad": (180, 119, 31),
    "surprise": (14, 127, 255),
    "neutral": (127, 127, 127),
}


class VideoError(Exception):
    """The input cannot be read as a video, or an output format is not understood."""


@dataclass(frozen=True)
class FrameResult:
    """The faces found in one analysed frame."""

    frame: int  # 0-based index of the frame in the source video
    time_s: float  # frame / fps: its position in the video
    faces: list[Face]  # largest first, as the API orders them


class ResultWriter(Protocol):
    """Where analysed frames go, one at a time, so a long video never has to fit in memory as text."""

    def write(self, result: FrameResult) -> None:
        """Append one analysed frame."""


class CsvWriter:
    """One row per face; a frame without faces still gets one row (empty face columns), so gaps are visible."""

    def __init__(self, stream: IO[str]) -> None:
        self._writer = csv.writer(stream)
        self._writer.writerow(
            ["frame", "time_s", "face", "x", "y", "width", "height", "detection_score", "emotion", *LABELS]
        )

    def write(self, result: FrameResult) -> None:
        """Write the frame's faces as rows."""
        start = [result.frame, f"{result.time_s:.3f}"]
        if not result.faces:
            self._writer.writerow([*start, *[""] * (7 + len(LABELS))])
        for number, face in enumerate(result.faces):
            box = face.box
            probabilities = face.probabilities.model_dump()
            score = "" if face.detection_score is None else f"{face.detection_score:.4f}"
            self._writer.writerow(
                [
                    *start,
                    number,
                    box.x,
                    box.y,
                    box.width,
                    box.height,
                    score,
                    face.emotion,
                    *(f"{probabilities[label]:.6f}" for label in LABELS),
                ]
            )


class JsonLinesWriter:
    """One JSON object per analysed frame: ``{"frame", "time_s", "faces": [<the API's face objects>]}``."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, result: FrameResult) -> None:
        """Write the frame as one line."""
        line = {
            "frame": result.frame,
            "time_s": round(result.time_s, 3),
            "faces": [face.model_dump(mode="json") for face in result.faces],
        }
        self._stream.write(json.dumps(line) + "\n")


@contextmanager
def open_result_writer(path: Path) -> Iterator[ResultWriter]:
    """The writer the file's extension asks for: ``.csv`` or JSON lines (``.jsonl``, ``.ndjson``, ``.json``)."""
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES | JSONL_SUFFIXES:
        raise VideoError(f"unknown output format {suffix!r} for {path}: use .csv, .jsonl, .ndjson or .json")
    with path.open("w", newline="", encoding="utf-8") as stream:
        yield CsvWriter(stream) if suffix in CSV_SUFFIXES else JsonLinesWriter(stream)


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the stream; ``frame_count`` is an estimate for some codecs (0 = unknown)."""

    fps: float
    frame_count: int
    width: int
    height: int


@contextmanager
def open_video(path: Path) -> Iterator[tuple[cv2.VideoCapture, VideoInfo]]:
    """Open a video for sequential reading, failing with a readable message instead of an empty loop."""
    if not path.is_file():
        raise VideoError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError(f"cannot open {path} as a video")
        fps = capture.get(cv2.CAP_PROP_FPS)
        info = VideoInfo(
            # Some containers report no rate; 25 keeps timestamps plausible rather than dividing by zero.
            fps=fps if fps > 0 else 25.0,
            frame_count=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        yield capture, info
    finally:
        capture.release()


def frames(
    capture: cv2.VideoCapture, every: int, *, decode_all: bool
) -> Iterator[tuple[int, NDArray[np.uint8] | None]]:
    """(index, frame) for each frame; frame is None for unsampled ones unless ``decode_all`` is set."""
    index = 0
    while True:
        if index % every == 0 or decode_all:
            ok, frame = capture.read()
            if not ok:
                return
            yield index, np.asarray(frame, dtype=np.uint8)  # H x W x 3 BGR; no copy, only typed
        else:
            if not capture.grab():
                return
            yield index, None
        index += 1


def draw_faces(frame: NDArray[np.uint8], faces: Sequence[Face]) -> NDArray[np.uint8]:
    """A copy of the BGR frame with each face's box and "emotion NN%" drawn in the emotion's colour."""
    out = frame.copy()
    thickness = max(2, round(min(frame.shape[:2]) / 240))
    for face in faces:
        box = face.box
        colour = EMOTION_BGR.get(face.emotion, (255, 255, 255))
        cv2.rectangle(out, (box.x, box.y), (box.x + box.width, box.y + box.height), colour, thickness)
        text = f"{face.emotion} {getattr(face.probabilities, face.emotion):.0%}"
        (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
        top = max(0, box.y - text_h - baseline - 4)
        cv2.rectangle(out, (box.x, top), (box.x + text_w + 6, top + text_h + baseline + 4), colour, cv2.FILLED)
        cv2.putText(
            out,
            text,
            (box.x + 3, top + text_h + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return out


def plot_emotions(results: Sequence[FrameResult], path: Path, *, width: int = 1000, height: int = 420) -> None:
    """PNG line chart of the largest face's seven probabilities over time, drawn with OpenCV.

    OpenCV rather than matplotlib because the service installs no plotting library; a frame without a face
    breaks the lines instead of joining across the gap.
    """
    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, 130, 40, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    end_s = max((result.time_s for result in results), default=0.0) or 1.0

    def point(time_s: float, probability: float) -> tuple[int, int]:
        return left + round(plot_w * time_s / end_s), top + round(plot_h * (1.0 - probability))

    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (90, 90, 90)
    cv2.putText(canvas, "Emotions over time (largest face)", (left, 26), font, 0.65, (30, 30, 30), 1, cv2.LINE_AA)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        _, y = point(0.0, tick)
        cv2.line(canvas, (left, y), (left + plot_w, y), (225, 225, 225), 1)
        cv2.putText(canvas, f"{tick:.2f}", (left - 46, y + 5), font, 0.45, grey, 1, cv2.LINE_AA)
    for step in range(6):
        time_s = end_s * step / 5
        x, _ = point(time_s, 0.0)
        cv2.putText(canvas, f"{time_s:.1f}s", (x - 14, top + plot_h + 22), font, 0.45, grey, 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (left, top), (left + plot_w, top + plot_h), grey, 1)

    for row, label in enumerate(LABELS):
        colour = EMOTION_BGR[label]
        previous: tuple[int, int] | None = None
        for result in results:
            current = point(result.time_s, getattr(result.faces[0].probabilities, label)) if result.faces else None
            if previous is not None and current is not None:
                cv2.line(canvas, previous, current, colour, 2, cv2.LINE_AA)
            previous = current
        legend_y = top + 10 + row * 22
        cv2.line(canvas, (width - right + 14, legend_y), (width - right + 38, legend_y), colour, 3)
        cv2.putText(canvas, label, (width - right + 44, legend_y + 5), font, 0.5, (30, 30, 30), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), canvas):
        raise VideoError(f"cannot write the plot to {path}")


@contextmanager
def open_annotated_writer(path: Path, info: VideoInfo) -> Iterator[cv2.VideoWriter]:
    """An MP4 writer at the source's size and rate (mp4v: the codec every OpenCV wheel can encode)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), info.fps, (info.width, info.height))
    if not writer.isOpened():
        raise VideoError(f"cannot write an annotated video to {path}")
    try:
        yield writer
    finally:
        writer.release()


@asynccontextmanager
async def local_analyser(settings: Settings) -> AsyncIterator[FrameAnalyser]:
    """Frames through the service's own pipeline in this process: the models, batcher and code of ``/predict``."""
    async with open_pipeline(settings, Metrics()) as pipeline:

        async def analyse(frame: NDArray[np.uint8]) -> PredictResponse:
            # The pipeline's one entry point takes encoded bytes. BMP is lossless and costs a copy to encode, so
            # the pipeline sees exactly this frame, as a server does when the client uploads it losslessly.
            ok, encoded = cv2.imencode(".bmp", frame)
            if not ok:
                raise VideoError(f"cannot encode a frame of shape {frame.shape}")
            analysis = await pipeline.analyze(encoded.tobytes(), Options())
            return PredictResponse.build(analysis.width, analysis.height, analysis.faces, analysis.model)

        yield analyse


@asynccontextmanager
async def remote_analyser(url: str, api_key: str | None = None) -> AsyncIterator[FrameAnalyser]:
    """Frames sent to a running service (``--url``), one request at a time, 503s retried by the client."""
    async with AsyncClient(url, api_key) as client:
        yield client.predict


async def analyse_video(
    source: Path,
    analyse: FrameAnalyser,
    *,
    every: int,
    out: Path,
    annotated: Path | None = None,
    plot: Path | None = None,
    progress: bool = True,
) -> list[FrameResult]:
    """Analyse every ``every``-th frame of ``source``, writing ``out`` (and the optional extras) as it goes."""
    if every < 1:
        raise VideoError(f"--every must be at least 1, got {every}")
    results: list[FrameResult] = []
    with ExitStack() as stack:
        capture, info = stack.enter_context(open_video(source))
        writer = stack.enter_context(open_result_writer(out))
        annotate = stack.enter_context(open_annotated_writer(annotated, info)) if annotated else None
        bar = stack.enter_context(
            tqdm(total=info.frame_count or None, unit="frame", disable=not progress, desc=source.name)
        )
        latest: list[Face] = []
        for index, frame in frames(capture, every, decode_all=annotate is not None):
            if index % every == 0 and frame is not None:
                latest = (await analyse(frame)).faces
                result = FrameResult(frame=index, time_s=index / info.fps, faces=latest)
                writer.write(result)
                results.append(result)
            if annotate is not None and frame is not None:
                annotate.write(draw_faces(frame, latest))
            bar.update()
    if plot:
        plot_emotions(results, plot)
    return results


def _every(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _results_path(text: str) -> Path:
    """Checked before any model loads, so a typo in the extension fails in milliseconds."""
    path = Path(text)
    if path.suffix.lower() not in CSV_SUFFIXES | JSONL_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text}: use .csv, or .jsonl/.ndjson/.json for JSON lines")
    return path


def add_video_command(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``deepfer video`` on the ``deepfer`` command (``service.cli``)."""
    parser = subcommands.add_parser(
        "video", help="analyse a video frame by frame, locally or through a running service (--url)"
    )
    parser.add_argument("video", type=Path, metavar="INPUT.mp4", help="any video OpenCV's FFmpeg can read")
    parser.add_argument("--every", type=_every, default=1, metavar="N", help="analyse every N-th frame (default 1)")
    parser.add_argument(
        "--out",
        type=_results_path,
        required=True,
        metavar="RESULT.csv",
        help="per-frame, per-face probabilities: CSV for .csv, JSON lines for .jsonl/.ndjson/.json",
    )
    parser.add_argument("--url", help="send frames to this service (e.g. http://127.0.0.1:8000) instead")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("DEEPFER_API_KEY"),
        help="API key for --url (default: $DEEPFER_API_KEY)",
    )
    parser.add_argument("--annotated", type=Path, metavar="OUT.mp4", help="also write the video with the faces drawn")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="also plot the largest face's emotions over time")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(handler=run_video_command)


def run_video_command(args: argparse.Namespace, settings: Settings) -> int:
    """``deepfer video``: 0 on success, 1 when the video or the service fails (with one readable line)."""
    analyser = remote_analyser(args.url, args.api_key) if args.url else local_analyser(settings)

    async def run() -> list[FrameResult]:
        async with analyser as analyse:
            return await analyse_video(
                args.video,
                analyse,
                every=args.every,
                out=args.out,
                annotated=args.annotated,
                plot=args.plot,
                progress=not args.no_progress,
            )

    try:
        results = asyncio.run(run())
    except (VideoError, DeepFERError, DeepFERClientError, httpx.HTTPError, OSError) as error:
        print(f"deepfer video: {error}", file=sys.stderr)
        return 1
    faces = sum(len(result.faces) for result in results)
    print(f"{len(results)} frames analysed, {faces} faces found; results in {args.out}", file=sys.stderr)
    return 0
