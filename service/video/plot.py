"""``--plot``: the largest face's seven probabilities over the video's time, as a PNG drawn with OpenCV.

OpenCV rather than matplotlib because the service installs no plotting library. A frame without a face breaks
the lines instead of joining across the gap. The time axis has round ticks (1, 2 or 5 times a power of ten
seconds) and ends on a tick, so a 7.3 s clip reads 0, 2, 4, 6, 8 s rather than 0.0, 1.5, 2.9, ...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from deepfer.contract import LABELS
from deepfer.drawing import EMOTION_BGR
from deepfer.video.frames import VideoError
from deepfer.video.writers import FrameResult

_MAX_TIME_TICKS = 8


def time_ticks(end_s: float, max_ticks: int = _MAX_TIME_TICKS) -> list[float]:
    """Round tick positions from 0 to the first tick at or past ``end_s``, at most ``max_ticks`` + 1 of them; a
    video analysed at one instant only (``end_s`` 0) gets a one-second axis."""
    end_s = end_s if end_s > 0 else 1.0
    magnitude = 10.0 ** math.floor(math.log10(end_s / max_ticks))
    step = next(m * magnitude for m in (1, 2, 5, 10) if end_s / (m * magnitude) <= max_ticks)
    count = math.ceil(end_s / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


def tick_label(seconds: float, step: float) -> str:
    """``12s`` for whole-second steps, ``0.5s`` or ``0.02s`` below: as many decimals as the step has."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    return f"{seconds:.{decimals}f}s"


def plot_emotions(results: Sequence[FrameResult], path: Path, *, width: int = 1000, height: int = 420) -> None:
    """Write the chart of ``results`` (largest face of each analysed frame) to ``path``."""
    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, 130, 40, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = time_ticks(max((result.time_s for result in results), default=0.0))
    end_s = ticks[-1]

    def point(time_s: float, probability: float) -> tuple[int, int]:
        return left + round(plot_w * time_s / end_s), top + round(plot_h * (1.0 - probability))

    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (90, 90, 90)
    cv2.putText(canvas, "Emotions over time (largest face)", (left, 26), font, 0.65, (30, 30, 30), 1, cv2.LINE_AA)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        _, y = point(0.0, tick)
        cv2.line(canvas, (left, y), (left + plot_w, y), (225, 225, 225), 1)
        cv2.putText(canvas, f"{tick:.2f}", (left - 46, y + 5), font, 0.45, grey, 1, cv2.LINE_AA)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    for time_s in ticks:
        x, _ = point(time_s, 0.0)
        cv2.line(canvas, (x, top + plot_h), (x, top + plot_h + 5), grey, 1)
        label = tick_label(time_s, step)
        (text_w, _), _ = cv2.getTextSize(label, font, 0.45, 1)
        cv2.putText(canvas, label, (x - text_w // 2, top + plot_h + 22), font, 0.45, grey, 1, cv2.LINE_AA)
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
