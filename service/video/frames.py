"""Video files in and out: reading frames (sampled ones decoded, the rest only grabbed) and the annotated copy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray


class VideoError(Exception):
    """The input cannot be read as a video, or an output cannot be written or is not understood."""


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
