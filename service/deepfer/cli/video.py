"""``deepfer video``: a video analysed frame by frame, locally or through a service (``--url``), tracks and all."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from deepfer.cli.common import add_url_options
from deepfer.settings import Settings

if TYPE_CHECKING:
    pass


#: Extensions ``deepfer video --out`` understands (checked before any model loads: a typo fails in milliseconds).
RESULT_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")
#: Extensions ``deepfer video --annotated`` can encode (deepfer.video.annotated.ENCODINGS: H.264 MP4, VP9 WebM).
ANNOTATED_SUFFIXES = (".mp4", ".webm")


def _every(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _results_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in RESULT_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text}: use .csv, or .jsonl/.ndjson/.json for JSON lines")
    return path


def _annotated_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in ANNOTATED_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text}: use .mp4 (H.264) or .webm (VP9)")
    return path


def add_video(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    add_url_options(parser, "send frames to this service (e.g. http://127.0.0.1:8000) instead")
    parser.add_argument(
        "--in-flight",
        type=_every,
        metavar="N",
        help="frames being analysed at once, so the server (or the local batcher) batches them (default 8)",
    )
    parser.add_argument(
        "--annotated",
        type=_annotated_path,
        metavar="OUT.mp4",
        help="also write the video with the faces drawn: H.264 for .mp4, VP9 for .webm (needs deepfer[video])",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="OUT.png", help="also plot each tracked person's smoothed emotions over time"
    )
    parser.add_argument(
        "--plot-tracks",
        type=_every,
        default=4,
        metavar="N",
        help="--plot draws one panel for each of the N longest tracks (default 4)",
    )
    parser.add_argument(
        "--summary",
        type=Path,
        metavar="OUT.json",
        help="also write per-track summaries: first/last time, duration, dominant emotion, share of time per emotion",
    )
    parser.add_argument(
        "--min-track-s",
        type=_non_negative,
        metavar="S",
        help="a face gets a track ID (a CSV track_id, a plot panel, a summary) once tracked this long, in seconds "
        "(default: DEEPFER_VIDEO_MIN_TRACK_S)",
    )
    parser.add_argument(
        "--min-track-score",
        type=_share,
        metavar="P",
        help="... and once its mean detection score reaches this, 0-1 (default: DEEPFER_VIDEO_MIN_TRACK_SCORE)",
    )
    parser.add_argument(
        "--scene-cut-change",
        type=_cut_share,
        metavar="P",
        help="a frame this different from the previous analysed one is a scene cut and ends every track: (1 - r) / 2 "
        "of their 32x18 grey thumbnails, above 0 up to 1 (default: DEEPFER_VIDEO_SCENE_CUT_CHANGE); 1 cuts only to "
        "a negative of the previous picture",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(handler=_video)


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _cut_share(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {text}")
    return value


def _video(args: argparse.Namespace, settings: Settings) -> int:
    """``deepfer video``: 0 on success, 1 when the video or the service fails (with one readable line)."""
    from deepfer.client import DeepFERClientError
    from deepfer.errors import DeepFERError
    from deepfer.tracking.tracker import TrackerSettings
    from deepfer.video import DEFAULT_IN_FLIGHT, analyse_video, check_outputs
    from deepfer.video.analysers import local_analyser, remote_analyser
    from deepfer.video.frames import VideoError

    def given(flag: float | None, setting: float) -> float:
        return setting if flag is None else flag

    tracker_settings = TrackerSettings(
        min_track_s=given(args.min_track_s, settings.video_min_track_s),
        min_track_score=given(args.min_track_score, settings.video_min_track_score),
    )
    try:
        # Before the models load or a frame is decoded: a missing encoder or folder costs no analysis.
        check_outputs(args.out, annotated=args.annotated, plot=args.plot, summary=args.summary)
    except VideoError as error:
        print(f"deepfer video: {error}", file=sys.stderr)
        return 2
    analyser = remote_analyser(args.url, args.api_key) if args.url else local_analyser(settings)

    async def run() -> int:
        async with analyser as analyse:
            results = await analyse_video(
                args.video,
                analyse,
                every=args.every,
                out=args.out,
                annotated=args.annotated,
                plot=args.plot,
                plot_tracks=args.plot_tracks,
                summary=args.summary,
                tracker_settings=tracker_settings,
                scene_cut_change=given(args.scene_cut_change, settings.video_scene_cut_change),
                progress=not args.no_progress,
                in_flight=args.in_flight or DEFAULT_IN_FLIGHT,
            )
        faces = sum(len(result.faces) for result in results)
        tracks = len({t.track_id for result in results for t in result.tracks if t.track_id is not None})
        print(
            f"{len(results)} frames analysed, {faces} faces found, {tracks} tracks; results in {args.out}",
            file=sys.stderr,
        )
        return 0

    try:
        return asyncio.run(run())
    except (VideoError, DeepFERError, DeepFERClientError, OSError) as error:
        print(f"deepfer video: {error}", file=sys.stderr)
        return 1
