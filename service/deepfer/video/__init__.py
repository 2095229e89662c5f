"""Video analysis: every N-th frame of a file through the face pipeline, written as CSV or JSON lines.

The story of one run, top to bottom in ``analyse_video``:
    check every output can be written (folders, the encoder) -> open the video -> for each frame: sampled?
    analyse it (local pipeline or a server) -> a scene cut since the previous analysed frame? end every track ->
    give its faces to the one ``Tracker`` at the frame's presentation time (track IDs, smoothed probabilities) ->
    write them -> optionally draw the latest faces onto the frame for the annotated copy -> after the loop, the
    per-track summary and the plot (one panel per track) -> put every output in place (``outputs``: each was
    written beside its target under a temporary name, so a failed run leaves none half-written).

Times are the container's presentation times (``frames.presentation_time``: repeated or missing times have a
stated rule), not ``index / fps``, so a variable-frame-rate phone video keeps its real timing, and the tracker's
expiry and smoothing, which are in seconds, see the real gaps.

Up to ``in_flight`` sampled frames are being analysed at once (``DEFAULT_IN_FLIGHT``), so a server (or the
local batcher) gets several to batch instead of one round trip at a time; their answers are taken back strictly in
frame order, so the tracker, the rows and the annotated copy see the same sequence as with one in flight.

Frames that are not sampled are skipped with ``grab()`` (no colour conversion, no copy) unless an annotated
copy is asked for; that copy keeps every source frame, so it plays at the source's speed, and holds each
frame's overlay until the next analysed frame replaces it. The parts: ``frames`` (video in), ``annotated`` (the
copy with boxes, H.264 or VP9), ``analysers`` (local or ``--url``), ``cuts`` (scene cuts), ``writers`` (CSV, JSON
lines), ``outputs`` (temporary files put in place at the end), ``plot``; drawing is ``deepfer.video.drawing``,
shared with ``deepfer predict --annotate``; the command line is ``deepfer.cli``.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from contextlib import AsyncExitStack, aclosing
from pathlib import Path
from typing import Final

import numpy as np
from tqdm import tqdm

from deepfer.contract import LABELS
from deepfer.tracking.tracker import Sighting, Tracker, TrackerSettings
from deepfer.video import plot as charts
from deepfer.video.analysers import FrameAnalyser
from deepfer.video.annotated import check_annotated, open_annotated_writer
from deepfer.video.cuts import SceneCuts
from deepfer.video.drawing import draw_faces
from deepfer.video.frames import Frame, VideoError, frames, open_video
from deepfer.video.outputs import check_writable, staged_outputs
from deepfer.video.writers import FrameResult, check_result_path, open_result_writer
from deepfer.wire import Face, PredictResponse

#: ``--in-flight``: sampled frames being analysed at once (bench/video_throughput.py: 1.6x the frames/s of one at a
#: time through a server, 1.8x locally, on 2 cores; a server on the same 2 cores gains nothing past 4). The
#: margin is for a server elsewhere, whose round-trip latency the window hides.
DEFAULT_IN_FLIGHT: Final = 8


def check_outputs(
    out: Path, *, annotated: Path | None = None, plot: Path | None = None, summary: Path | None = None
) -> None:
    """What each output needs, checked before any work (models, decoding): its folder, and for ``annotated`` the
    encoder (PyAV), so a run never fails after minutes of analysis for a reason known at its start."""
    check_result_path(out)
    if annotated is not None:
        check_annotated(annotated)
    for path in (out, annotated, plot, summary):
        if path is not None:
            check_writable(path)


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
    scene_cut_change: float | None = None,
    progress: bool = True,
    in_flight: int = DEFAULT_IN_FLIGHT,
) -> list[FrameResult]:
    """Analyse every ``every``-th frame of ``source`` into ``out`` (and the optional extras), each file put in
    place only when the whole run succeeded. ``scene_cut_change`` (``deepfer.video.cuts``) ends every track at a
    frame that changes at least that much from the previous analysed one; None never cuts."""
    if every < 1:
        raise VideoError(f"--every must be at least 1, got {every}")
    if in_flight < 1:
        raise VideoError(f"--in-flight must be at least 1, got {in_flight}")
    check_outputs(out, annotated=annotated, plot=plot, summary=summary)
    tracker = Tracker(tracker_settings)
    cuts = SceneCuts(scene_cut_change) if scene_cut_change is not None else None
    cut_times: list[float] = []
    results: list[FrameResult] = []
    async with AsyncExitStack() as stack:
        outputs = stack.enter_context(staged_outputs())
        capture, info = stack.enter_context(open_video(source))
        writer = stack.enter_context(open_result_writer(outputs.stage(out)))
        annotate = stack.enter_context(open_annotated_writer(outputs.stage(annotated), info)) if annotated else None
        bar = stack.enter_context(
            tqdm(total=info.frame_count or None, unit="frame", disable=not progress, desc=source.name)
        )
        latest: list[Face] = []
        source_frames = frames(capture, info, every, decode_all=annotate is not None)
        # aclosing: a failure here (a full disk) cancels the requests still in flight at once, not at loop exit.
        answered = await stack.enter_async_context(aclosing(_in_order(source_frames, analyse, every, in_flight)))
        async for frame, answer in answered:
            if answer is not None:
                if cuts is not None and frame.image is not None and cuts.is_cut(frame.image):
                    tracker.cut()
                    cut_times.append(frame.time_s)
                latest = answer.faces
                tracked = tracker.update(frame.time_s, [_detection(face) for face in latest])
                result = FrameResult(frame=frame.index, time_s=frame.time_s, faces=latest, tracks=tracked)
                writer.write(result)
                results.append(result)
            if annotate is not None and frame.image is not None:
                annotate.write(draw_faces(frame.image, latest), frame.time_s)
            bar.update()
        summaries = tracker.summaries()
        if summary:
            document = {
                "video": str(source),
                "scene_cuts_s": [round(time_s, 3) for time_s in cut_times],
                "tracks": [track.to_dict() for track in summaries],
            }
            outputs.stage(summary).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        if plot:
            charts.plot_tracks(results, summaries, outputs.stage(plot), max_tracks=plot_tracks)
    return results


async def _in_order(
    source: Iterator[Frame], analyse: FrameAnalyser, every: int, in_flight: int
) -> AsyncGenerator[tuple[Frame, PredictResponse | None]]:
    """Every frame in order with its answer (None for frames not sampled), up to ``in_flight`` sampled frames
    being analysed at once. Frames read ahead wait here in order; the ones between two sampled frames wait with
    them (decoded only when annotating), at most ``every * in_flight`` frames in memory."""
    pending: deque[tuple[Frame, asyncio.Task[PredictResponse] | None]] = deque()
    running = 0
    try:
        for frame in source:
            task = None
            if frame.index % every == 0 and frame.image is not None:
                while running >= in_flight:
                    oldest, waiting = pending.popleft()
                    running -= waiting is not None
                    yield oldest, None if waiting is None else await waiting
                task = asyncio.ensure_future(analyse(frame.image))
                running += 1
            pending.append((frame, task))
        while pending:
            oldest, waiting = pending.popleft()
            yield oldest, None if waiting is None else await waiting
    finally:
        # A failed frame (or the caller stopping) leaves the frames after it unanswered: cancel, do not leak.
        tasks = [task for _, task in pending if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _detection(face: Face) -> Sighting:
    """The API's face as the tracker's input: its box, its seven probabilities in LABELS order and its score."""
    box = face.box
    probabilities = face.probabilities.model_dump()
    return Sighting(
        box=(float(box.x), float(box.y), float(box.width), float(box.height)),
        probabilities=np.array([probabilities[label] for label in LABELS], dtype=np.float32),
        score=face.detection_score,
    )
