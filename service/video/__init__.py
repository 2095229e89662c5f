"""Video analysis: every N-th frame of a file through the face pipeline, written as CSV or JSON lines.

The story of one run, top to bottom in ``analyse_video``:
    open the video -> for each frame: sampled? analyse it (local pipeline or a server) -> give its faces to the
    one ``Tracker`` at the frame's presentation time (track IDs, smoothed probabilities) -> write them ->
    optionally draw the latest faces onto the frame for the annotated copy -> after the loop, the per-track
    summary and the plot (one panel per track).

Times are the container's presentation times (``frames.presentation_time``: repeated or missing times have a
stated rule), not ``index / fps``, so a variable-frame-rate phone video keeps its real timing, and the tracker's
expiry and smoothing, which are in seconds, see the real gaps.

Frames that are not sampled are skipped with ``grab()`` (no colour conversion, no copy) unless an annotated
copy is asked for; that copy keeps every source frame, so it plays at the source's speed, and holds each
frame's overlay until the next analysed frame replaces it. The parts: ``frames`` (video in and out),
``analysers`` (local or ``--url``), ``writers`` (CSV, JSON lines), ``plot``; drawing is ``deepfer.drawing``,
shared with ``deepfer predict --annotate``; the command line is ``deepfer.cli``.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from tqdm import tqdm

from deepfer.contract import LABELS
from deepfer.drawing import draw_faces
from deepfer.http.schemas import Face
from deepfer.tracking import Detection, Tracker, TrackerSettings
from deepfer.video import plot as charts
from deepfer.video.analysers import FrameAnalyser
from deepfer.video.frames import VideoError, frames, open_annotated_writer, open_video
from deepfer.video.writers import FrameResult, open_result_writer


async def analyse_video(
    source: Path,
    analyse: FrameAnalyser,
    *,
    every: int,
    out: Path,
    annotated: Path | None = None,
    plot: Path | None = None,
    plot_tracks: int = charts.DEFAULT_PLOT_TRACKS,
    summary: Path | None = None,
    tracker_settings: TrackerSettings | None = None,
    progress: bool = True,
) -> list[FrameResult]:
    """Analyse every ``every``-th frame of ``source``, writing ``out`` (and the optional extras) as it goes."""
    if every < 1:
        raise VideoError(f"--every must be at least 1, got {every}")
    tracker = Tracker(tracker_settings)
    results: list[FrameResult] = []
    with ExitStack() as stack:
        capture, info = stack.enter_context(open_video(source))
        writer = stack.enter_context(open_result_writer(out))
        annotate = stack.enter_context(open_annotated_writer(annotated, info)) if annotated else None
        bar = stack.enter_context(
            tqdm(total=info.frame_count or None, unit="frame", disable=not progress, desc=source.name)
        )
        latest: list[Face] = []
        for frame in frames(capture, info, every, decode_all=annotate is not None):
            if frame.index % every == 0 and frame.image is not None:
                latest = (await analyse(frame.image)).faces
                tracked = tracker.update(frame.time_s, [_detection(face) for face in latest])
                result = FrameResult(frame=frame.index, time_s=frame.time_s, faces=latest, tracks=tracked)
                writer.write(result)
                results.append(result)
            if annotate is not None and frame.image is not None:
                annotate.write(draw_faces(frame.image, latest))
            bar.update()
    summaries = tracker.summaries()
    if summary:
        document = {"video": str(source), "tracks": [track.to_dict() for track in summaries]}
        try:
            summary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        except OSError as error:
            raise VideoError(f"cannot write the summary to {summary}: {error}") from None
    if plot:
        charts.plot_tracks(results, summaries, plot, max_tracks=plot_tracks)
    return results


def _detection(face: Face) -> Detection:
    """The API's face as the tracker's input: its box and its seven probabilities in LABELS order."""
    box = face.box
    probabilities = face.probabilities.model_dump()
    return Detection(
        box=(float(box.x), float(box.y), float(box.width), float(box.height)),
        probabilities=np.array([probabilities[label] for label in LABELS], dtype=np.float32),
    )
