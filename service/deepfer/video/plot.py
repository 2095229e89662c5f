"""``--plot``: one panel per tracked person (the longest ``--plot-tracks``), each that track's seven smoothed
probabilities over the video's time, as a PNG drawn with OpenCV.

OpenCV rather than matplotlib because the service installs no plotting library. A frame where the track is not
seen breaks its lines instead of joining across the gap. The time axis has round ticks (1, 2 or 5 times a power of ten
seconds) and ends on a tick, so a 7.3 s clip reads 0, 2, 4, 6, 8 s rather than 0.0, 1.5, 2.9, ...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from deepfer.contract import LABELS
from deepfer.tracking.tracker import TrackSummary
from deepfer.video.drawing import EMOTION_BGR
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


#: ``--plot-tracks``: how many tracks get a panel (the longest ones), so a crowd still gives a readable chart.
DEFAULT_PLOT_TRACKS: Final = 4
PANEL_HEIGHT: Final = 260  # pixels per track panel: title, plotting area, time labels
_LEFT, _RIGHT, _TOP, _BOTTOM = 60, 130, 40, 50  # margins inside a panel


def longest_tracks(summaries: Sequence[TrackSummary], count: int) -> list[TrackSummary]:
    """The ``count`` tracks seen longest (duration, then frames; the lower ID on a tie), in track-ID order."""
    ranked = sorted(summaries, key=lambda s: (-s.duration_s, -s.frames, s.track_id))[:count]
    return sorted(ranked, key=lambda s: s.track_id)


def plot_tracks(
    results: Sequence[FrameResult],
    summaries: Sequence[TrackSummary],
    path: Path,
    *,
    max_tracks: int = DEFAULT_PLOT_TRACKS,
    width: int = 1000,
) -> None:
    """Write one panel per track (the longest ``max_tracks``), each its smoothed probabilities over the video's
    time; all panels share the time axis, so who was there when reads down the page."""
    chosen = longest_tracks(summaries, max_tracks)
    canvas = np.full((PANEL_HEIGHT * max(1, len(chosen)), width, 3), 255, np.uint8)
    end_s = time_ticks(max((result.time_s for result in results), default=0.0))[-1]
    if not chosen:
        _panel(canvas, 0, "No tracked faces", [], end_s)
    for number, track in enumerate(chosen):
        series: list[tuple[float, NDArray[np.float32] | None]] = []
        for result in results:
            mine = [t.smoothed for t in result.tracks if t.track_id == track.track_id]
            series.append((result.time_s, mine[0] if mine else None))
        title = (
            f"Track {track.track_id}: {track.first_s:.1f}-{track.last_s:.1f} s, "
            f"mostly {track.dominant_emotion} (smoothed)"
        )
        _panel(canvas, number * PANEL_HEIGHT, title, series, end_s, on_top=track.dominant_emotion)
    if not cv2.imwrite(str(path), canvas):
        raise VideoError(f"cannot write the plot to {path}")


def _panel(
    canvas: NDArray[np.uint8],
    offset: int,
    title: str,
    series: Sequence[tuple[float, NDArray[np.float32] | None]],
    end_s: float,
    *,
    on_top: str | None = None,
) -> None:
    """One track's chart in the band of ``canvas`` starting at row ``offset``; a None sample breaks the lines
    (the track was not seen in that frame) instead of joining across the gap. ``on_top``'s line is drawn last:
    the emotion the title names stays visible where another runs close to it (fear drawn over angry hid it)."""
    width = canvas.shape[1]
    left, top = _LEFT, offset + _TOP
    plot_w, plot_h = width - _LEFT - _RIGHT, PANEL_HEIGHT - _TOP - _BOTTOM
    ticks = time_ticks(end_s)

    def point(time_s: float, probability: float) -> tuple[int, int]:
        return left + round(plot_w * time_s / end_s), top + round(plot_h * (1.0 - probability))

    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (90, 90, 90)
    cv2.putText(canvas, title, (left, offset + 26), font, 0.6, (30, 30, 30), 1, cv2.LINE_AA)
    for tick in (0.0, 0.5, 1.0):
        _, y = point(0.0, tick)
        cv2.line(canvas, (left, y), (left + plot_w, y), (225, 225, 225), 1)
        cv2.putText(canvas, f"{tick:.1f}", (left - 40, y + 5), font, 0.45, grey, 1, cv2.LINE_AA)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    for time_s in ticks:
        x, _ = point(time_s, 0.0)
        cv2.line(canvas, (x, top + plot_h), (x, top + plot_h + 5), grey, 1)
        label = tick_label(time_s, step)
        (text_w, _), _ = cv2.getTextSize(label, font, 0.45, 1)
        cv2.putText(canvas, label, (x - text_w // 2, top + plot_h + 22), font, 0.45, grey, 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (left, top), (left + plot_w, top + plot_h), grey, 1)

    for row, label in sorted(enumerate(LABELS), key=lambda item: item[1] == on_top):
        colour = EMOTION_BGR[label]
        previous: tuple[int, int] | None = None
        for time_s, probabilities in series:
            current = point(time_s, float(probabilities[row])) if probabilities is not None else None
            if previous is not None and current is not None:
                cv2.line(canvas, previous, current, colour, 2, cv2.LINE_AA)
            previous = current
        legend_y = top + 10 + row * 22
        cv2.line(canvas, (width - _RIGHT + 14, legend_y), (width - _RIGHT + 38, legend_y), colour, 3)
        cv2.putText(canvas, label, (width - _RIGHT + 44, legend_y + 5), font, 0.5, (30, 30, 30), 1, cv2.LINE_AA)
