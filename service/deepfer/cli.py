"""The ``deepfer`` command: ``serve`` runs the HTTP service, ``predict`` analyses image files, ``video`` a video.

Every command's arguments are parsed here, and each handler imports what it needs when it runs, so ``deepfer
--version`` and ``deepfer predict --url`` work from the client-only install (``pip install deepfer``); the local
pipeline, ``serve`` and ``video`` need ``deepfer[server]``. Settings come from ``DEEPFER_*`` like the service's;
flags override the few that matter on a command line.

    deepfer predict IMAGE...           local pipeline (or --url: through a running service)
    deepfer predict a.jpg --annotate out.jpg       one image: boxes and labels drawn into out.jpg
    deepfer predict a.jpg b.png --annotate out/    several: out/a.jpg, out/b.jpg (a folder, made if needed)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from deepfer.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from deepfer.engine.pipeline import Options
    from deepfer.wire import ErrorBody, PredictResponse

Handler = Callable[[argparse.Namespace, Settings], int]

#: Extensions ``deepfer video --out`` understands (checked before any model loads: a typo fails in milliseconds).
RESULT_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")
#: Extensions ``deepfer video --annotated`` can encode (deepfer.video.annotated.ENCODINGS: H.264 MP4, VP9 WebM).
ANNOTATED_SUFFIXES = (".mp4", ".webm")


class UsageError(Exception):
    """Arguments that cannot work together; reported as ``deepfer <command>: ...`` with exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deepfer", description="DeepFER facial emotion recognition")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(subcommands)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args, Settings())
    except UsageError as error:
        print(f"deepfer {args.command}: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `deepfer predict ... | head` closed the pipe: not an error worth a traceback. Point stdout at devnull so
        # the interpreter's final flush does not raise again (the recipe of Python's signal documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as error:
        from deepfer.errors import ModelLoadError

        if not isinstance(error, ModelLoadError):
            raise
        print(f"deepfer: cannot start: {error}", file=sys.stderr)
        return 2


def _package_version() -> str:
    try:
        return version("deepfer")
    except PackageNotFoundError:
        return "0+unknown"


# --- serve ------------------------------------------------------------------------------------------------------


def _add_serve(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("serve", help="run the HTTP service (settings from DEEPFER_* variables)")
    parser.add_argument("--host", help="interface to listen on (DEEPFER_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (DEEPFER_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (DEEPFER_WORKERS, default 1)")
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from deepfer.engine.models import load_models
    from deepfer.logs import configure_logging
    from deepfer.server.app import create_app
    from deepfer.server.connections import DrainingServer, uvicorn_options

    overrides = {name: getattr(args, name) for name in ("host", "port", "workers") if getattr(args, name) is not None}
    settings = Settings(**{**settings.model_dump(), **overrides})
    # Loaded before uvicorn starts, so a bad file ends the command with one readable line instead of a
    # lifespan traceback; a single process then serves these very models (they load once).
    models = load_models(settings)
    configure_logging(settings.log_level)
    if settings.workers > 1:
        # An import string, so each worker process builds its own app (and loads its own models) from the
        # environment; the models loaded above were only the check (http/server.py says what the pre-drain does).
        del models
        uvicorn.run("deepfer.server.app:app_from_env", factory=True, **uvicorn_options(settings))
        return 0
    app = create_app(settings, models)
    config = uvicorn.Config(app, **uvicorn_options(settings))
    DrainingServer(config, app=app, pre_drain_s=settings.pre_drain_s).run()
    return 0


# --- predict ----------------------------------------------------------------------------------------------------


def _add_predict(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "predict", help="analyse image files with the service's pipeline, locally or through a service (--url)"
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--format", choices=("json", "table"), default="table")
    parser.add_argument("--no-detect", action="store_true", help="each image is one already-cropped face")
    parser.add_argument("--max-faces", type=int, help="at most this many faces per image")
    parser.add_argument("--min-face-size", type=int, default=0, help="ignore smaller faces (pixels)")
    parser.add_argument(
        "--annotate",
        type=Path,
        metavar="OUT",
        help="draw boxes and labels: into the file OUT for one image; for several, OUT is a folder that gets "
        "<image stem>.jpg for each",
    )
    _add_url_options(parser, "send the images to this service (e.g. http://127.0.0.1:8000) instead")
    parser.set_defaults(handler=_predict)


def _add_url_options(parser: argparse.ArgumentParser, url_help: str) -> None:
    parser.add_argument("--url", help=url_help)
    parser.add_argument(
        "--api-key", default=os.environ.get("DEEPFER_API_KEY"), help="API key for --url (default: $DEEPFER_API_KEY)"
    )


def annotation_targets(images: Sequence[Path], annotate: Path) -> list[Path]:
    """Where each image's drawing goes: ``annotate`` itself for one image; ``annotate/<stem>.jpg`` for several.

    Refused before anything runs: several images into one file name, two images with the same stem (one drawing
    would overwrite the other), and a drawing that would overwrite an input.
    """
    if len(images) == 1:
        targets = [annotate]
    else:
        if annotate.suffix and not annotate.is_dir():
            raise UsageError(
                f"--annotate {annotate} names one file, but {len(images)} images were given: pass a folder "
                f"(e.g. --annotate {annotate.with_suffix('')}/) to get <image stem>.jpg for each"
            )
        targets = [annotate / f"{image.stem}.jpg" for image in images]
        if len(set(targets)) < len(targets):
            raise UsageError(
                f"two images share a file stem, so their drawings in {annotate}/ would overwrite each other"
            )
    sources = {image.resolve() for image in images}
    if clash := next((target for target in targets if target.resolve() in sources), None):
        raise UsageError(f"--annotate would overwrite the input {clash}")
    return targets


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    targets = annotation_targets(args.images, args.annotate) if args.annotate else None
    max_faces = min(args.max_faces or settings.max_faces, settings.max_faces)
    if args.url:
        outcomes = _predict_remote(
            args.images,
            args.url,
            args.api_key,
            no_detect=args.no_detect,
            max_faces=max_faces,
            min_face_size=args.min_face_size,
        )
        images: dict[Path, NDArray[np.uint8]] = {}
    else:
        from deepfer.engine.pipeline import Options

        options = Options(detect=not args.no_detect, max_faces=max_faces, min_face_size=args.min_face_size)
        outcomes, images = asyncio.run(_predict_local(args.images, options, settings, keep_images=bool(targets)))
    if args.format == "json":
        print(json.dumps([as_json(path, outcome) for path, outcome in outcomes], indent=2))
    else:
        print(as_table(outcomes))
    if targets is not None:
        _write_annotations(outcomes, targets, images, settings)
    return 1 if any(not _answered(outcome) for _, outcome in outcomes) else 0


def _answered(outcome: PredictResponse | ErrorBody) -> bool:
    from deepfer.wire import PredictResponse

    return isinstance(outcome, PredictResponse)


async def _predict_local(
    paths: list[Path], options: Options, settings: Settings, *, keep_images: bool
) -> tuple[list[tuple[Path, PredictResponse | ErrorBody]], dict[Path, NDArray[np.uint8]]]:
    """Every file through the pipeline, a few at a time so their faces share classifier batches.

    With ``keep_images`` (``--annotate``) each file is decoded here and handed to ``Pipeline.analyze_image``,
    so the drawing is made on the very array that was analysed: one decode per file.
    """
    from deepfer.engine.answers import predict_response
    from deepfer.engine.decode import decode
    from deepfer.engine.pipeline import open_pipeline
    from deepfer.errors import DeepFERError
    from deepfer.metrics import Metrics
    from deepfer.wire import ErrorBody

    images: dict[Path, NDArray[np.uint8]] = {}
    async with open_pipeline(settings, Metrics()) as pipeline:
        slots = asyncio.Semaphore((settings.detect_processes or settings.pipeline_threads) * 2)

        async def one(path: Path) -> tuple[Path, PredictResponse | ErrorBody]:
            async with slots:
                try:
                    data = path.read_bytes()
                    if not keep_images:
                        return path, predict_response(await pipeline.analyze(data, options))
                    image = await asyncio.to_thread(
                        decode, data, max_pixels=settings.max_pixels, max_pixel_scans=settings.max_pixel_scans
                    )
                    images[path] = image
                    return path, predict_response(await pipeline.analyze_image(image, options))
                except DeepFERError as error:
                    return path, ErrorBody.of(error)
                except OSError as error:
                    return path, ErrorBody(code="unreadable", message=str(error))

        return list(await asyncio.gather(*(one(path) for path in paths))), images


def _predict_remote(
    paths: list[Path], url: str, api_key: str | None, *, no_detect: bool, max_faces: int, min_face_size: int
) -> list[tuple[Path, PredictResponse | ErrorBody]]:
    """Every file through ``POST /predict`` of the service at ``url``; a refused file is its error entry, an
    unreachable service ends the command with one line that names the URL."""
    from deepfer.client import Client, DeepFERClientError, ServiceUnreachableError
    from deepfer.wire import ErrorBody

    outcomes: list[tuple[Path, PredictResponse | ErrorBody]] = []
    with Client(url, api_key) as client:
        for path in paths:
            try:
                outcome: PredictResponse | ErrorBody = client.predict(
                    path.read_bytes(), detect=not no_detect, max_faces=max_faces, min_face_size=min_face_size
                )
            except ServiceUnreachableError as error:
                raise UsageError(error.message) from None
            except DeepFERClientError as error:
                outcome = ErrorBody(code=error.code, message=error.message)
            except OSError as error:
                outcome = ErrorBody(code="unreadable", message=str(error))
            outcomes.append((path, outcome))
    return outcomes


def _write_annotations(
    outcomes: list[tuple[Path, PredictResponse | ErrorBody]],
    targets: list[Path],
    images: dict[Path, NDArray[np.uint8]],
    settings: Settings,
) -> None:
    """Each answered image with its faces drawn. Local runs drew on the analysed array; with ``--url`` the
    answer holds no pixels, so the file is decoded here, as the service decoded it (orientation applied)."""
    import cv2

    from deepfer.engine.decode import decode
    from deepfer.video.drawing import draw_faces
    from deepfer.wire import PredictResponse

    for (path, outcome), target in zip(outcomes, targets, strict=True):
        if not isinstance(outcome, PredictResponse):
            continue
        image = images.get(path)
        if image is None:
            image = decode(path.read_bytes(), max_pixels=settings.max_pixels, max_pixel_scans=settings.max_pixel_scans)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(target), draw_faces(image, outcome.faces)):
            raise UsageError(f"cannot write {target}")


def as_json(path: Path, outcome: PredictResponse | ErrorBody) -> dict[str, object]:
    if not _answered(outcome):
        return {"path": str(path), "error": outcome.model_dump()}
    return {"path": str(path), **outcome.model_dump()}


def as_table(outcomes: list[tuple[Path, PredictResponse | ErrorBody]]) -> str:
    """One row per face, columns as wide as their widest cell (a long file name never shifts the others)."""
    header = ("image", "face", "box (x,y,w,h)", "score", "emotion", "p")
    right_aligned = {1, 3, 5}
    rows: list[tuple[str, ...]] = []
    notes: dict[int, str] = {}  # row index -> text that replaces the face columns (error, no face)
    for path, outcome in outcomes:
        if not _answered(outcome):
            notes[len(rows)] = f"error: {outcome.code}: {outcome.message}"  # type: ignore[union-attr]
            rows.append((path.name, "", "", "", "", ""))
            continue
        faces = outcome.faces  # type: ignore[union-attr]
        if not faces:
            notes[len(rows)] = "no face found"
            rows.append((path.name, "-", "", "", "", ""))
        for number, face in enumerate(faces, start=1):
            box = f"{face.box.x},{face.box.y},{face.box.width},{face.box.height}"
            score = "-" if face.detection_score is None else f"{face.detection_score:.2f}"
            top = getattr(face.probabilities, face.emotion)
            rows.append((path.name, str(number), box, score, face.emotion, f"{top:.2f}"))
    widths = [max(len(cells[column]) for cells in [header, *rows]) for column in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        padded = [
            cell.rjust(width) if column in right_aligned else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    lines = [line(header), "  ".join("-" * width for width in widths)]
    for index, cells in enumerate(rows):
        if index in notes:
            first = cells[0].ljust(widths[0])
            second = cells[1].rjust(widths[1]) + "  " if cells[1] else ""
            lines.append(f"{first}  {second}{notes[index]}")
        else:
            lines.append(line(cells))
    return "\n".join(lines)


# --- video ------------------------------------------------------------------------------------------------------


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


def _add_video(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    _add_url_options(parser, "send frames to this service (e.g. http://127.0.0.1:8000) instead")
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


COMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_serve,
    _add_predict,
    _add_video,
)

if __name__ == "__main__":
    sys.exit(main())
