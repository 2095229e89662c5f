"""Video analysis: every N-th frame of a file through the face pipeline, written as CSV or JSON lines.

The story of one run, top to bottom in ``analyse_video``:
    open the video -> for each frame: sampled? analyse it (local pipeline or a server) -> write its faces ->
    optionally draw the latest faces onto the frame for the annotated copy -> after the loop, the plot.

Frames that are not sampled are skipped with ``grab()`` (no colour conversion, no copy) unless an annotated
copy is asked for; that copy keeps every source frame, so it plays at the source's speed, and holds each
frame's overlay until the next analysed frame replaces it. The parts: ``frames`` (video in and out),
``analysers`` (local or ``--url``), ``writers`` (CSV, JSON lines), ``plot``; drawing is ``deepfer.drawing``,
shared with ``deepfer predict --annotate``; the command line is ``deepfer.cli``.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from tqdm import tqdm

from deepfer.drawing import draw_faces
from deepfer.http.schemas import Face
from deepfer.video.analysers import FrameAnalyser
from deepfer.video.frames import VideoError, frames, open_annotated_writer, open_video
from deepfer.video.plot import plot_emotions
from deepfer.video.writers import FrameResult, open_result_writer


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
