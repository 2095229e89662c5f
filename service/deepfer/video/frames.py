"""Video files in: frames in order with their presentation times (sampled ones decoded, the rest only grabbed)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

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


#: The step given to a frame whose presentation time is not after the previous frame's (a repeated or
#: out-of-order time in a broken or variable-frame-rate container): the smallest step a millisecond clock
#: shows, so the real times that follow are taken as they come instead of being pushed later one by one.
REPEATED_TIME_STEP_S: Final = 0.001


def presentation_time(index: int, position_ms: float, fps: float, previous_s: float | None) -> float:
    """The time in seconds of frame ``index``, from the container's presentation time ``position_ms``.

    The rule, in order:

    1. No time: OpenCV reports a negative or non-finite position, or 0 ms for a frame after the first (its
       FFmpeg backend answers 0 when a frame has no presentation time). Then ``index / fps``, the old estimate.
    2. Not after ``previous_s`` (a repeated or backwards time): ``previous_s + REPEATED_TIME_STEP_S``, because
       ``Tracker.update`` needs strictly increasing times and a near-zero gap barely moves the smoothing.
    3. Otherwise the container's time: a variable-frame-rate phone video keeps its real spacing.
    """
    no_time = not math.isfinite(position_ms) or position_ms < 0 or (position_ms == 0 and index > 0)
    time_s = index / fps if no_time else position_ms / 1000
    if previous_s is not None and time_s <= previous_s:
        return previous_s + REPEATED_TIME_STEP_S
    return time_s


@dataclass(frozen=True)
class Frame:
    """One source frame: its index, its presentation time, and its pixels when it was decoded."""

    index: int  # 0-based, in decoding order
    time_s: float  # presentation_time(): strictly increasing over the video
    image: NDArray[np.uint8] | None  # H x W x 3 BGR; None for a frame only grabbed (not sampled)


def frames(capture: cv2.VideoCapture, info: VideoInfo, every: int, *, decode_all: bool) -> Iterator[Frame]:
    """Every frame in order; the image is None for unsampled ones unless ``decode_all`` is set.

    The time is read for every frame, grabbed or decoded (``grab`` demuxes and so sets the position), so the
    repeated-time rule sees the same sequence whatever ``--every`` is.
    """
    index = 0
    previous_s: float | None = None
    while True:
        image: NDArray[np.uint8] | None = None
        if index % every == 0 or decode_all:
            ok, decoded = capture.read()
            if not ok:
                return
            image = np.asarray(decoded, dtype=np.uint8)  # H x W x 3 BGR; no copy, only typed
        elif not capture.grab():
            return
        previous_s = presentation_time(index, capture.get(cv2.CAP_PROP_POS_MSEC), info.fps, previous_s)
        yield Frame(index=index, time_s=previous_s, image=image)
        index += 1
