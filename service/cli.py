"""The ``deepfer`` command: ``serve`` runs the HTTP service, ``predict`` runs the same pipeline on local files.

Each subcommand is a function that registers its parser and handler in ``COMMANDS``; adding one (e.g.
``deepfer video``) is a new ``_add_<name>`` function and one entry in that tuple. Settings come from
``DEEPFER_*`` like the service's; flags override the few that matter on a command line.
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

import cv2
import numpy as np
from numpy.typing import NDArray

from service.contract import LABELS
from service.decode import decode
from service.errors import DeepFERError, ModelLoadError
from service.metrics import Metrics
from service.pipeline import Analysis, Options, load_models, open_pipeline
from service.schemas import ErrorBody, PredictResponse
from service.settings import Settings
from service.video import add_video_command

Handler = Callable[[argparse.Namespace, Settings], int]


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
    except ModelLoadError as error:
        print(f"deepfer: cannot start: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `deepfer predict ... | head` closed the pipe: not an error worth a traceback. Point stdout at devnull so
        # the interpreter's final flush does not raise again (the recipe of Python's signal documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _package_version() -> str:
    try:
        return version("deepfer")
    except PackageNotFoundError:
        return "0+unknown"


def _add_serve(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("serve", help="run the HTTP service (settings from DEEPFER_* variables)")
    parser.add_argument("--host", help="interface to listen on (DEEPFER_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (DEEPFER_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (DEEPFER_WORKERS, default 1)")
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from service.app import create_app
    from service.observability import configure_logging
    from service.server import DrainingServer, uvicorn_options

    overrides = {name: getattr(args, name) for name in ("host", "port", "workers") if getattr(args, name) is not None}
    settings = Settings(**{**settings.model_dump(), **overrides})
    # Load the models once before uvicorn starts, so a bad file ends the command with one readable line
    # instead of a lifespan traceback; the app loads its own copy (a few hundred ms, once).
    load_models(settings)
    configure_logging(settings.log_level)
    if settings.workers > 1:
        # An import string, so each worker process builds its own app from the environment (server.py says what
        # the pre-drain does there).
        uvicorn.run("service.app:app_from_env", factory=True, **uvicorn_options(settings))
        return 0
    app = create_app(settings)
    config = uvicorn.Config(app, **uvicorn_options(settings))
    DrainingServer(config, app=app, pre_drain_s=settings.pre_drain_s).run()
    return 0


def _add_predict(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser("predict", help="analyse local images with the service's pipeline")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--format", choices=("json", "table"), default="table")
    parser.add_argument("--no-detect", action="store_true", help="each image is one already-cropped face")
    parser.add_argument("--max-faces", type=int, help="at most this many faces per image")
    parser.add_argument("--min-face-size", type=int, default=0, help="ignore smaller faces (pixels)")
    parser.add_argument(
        "--annotate", type=Path, metavar="OUT.jpg", help="draw boxes and labels; several images get OUT-<name>.jpg"
    )
    parser.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    options = Options(
        detect=not args.no_detect,
        max_faces=min(args.max_faces or settings.max_faces, settings.max_faces),
        min_face_size=args.min_face_size,
    )
    outcomes = asyncio.run(_analyse_files(args.images, options, settings))
    if args.format == "json":
        print(json.dumps([_as_json(path, outcome) for path, outcome in outcomes], indent=2))
    else:
        print(_as_table(outcomes))
    if args.annotate:
        for path, outcome in outcomes:
            if isinstance(outcome, tuple):
                target = args.annotate if len(outcomes) == 1 else _annotated_name(args.annotate, path)
                cv2.imwrite(str(target), _annotate(path.read_bytes(), outcome[0], settings))
    return 1 if any(not isinstance(outcome, tuple) for _, outcome in outcomes) else 0


Outcome = tuple[Analysis, PredictResponse] | ErrorBody


async def _analyse_files(paths: list[Path], options: Options, settings: Settings) -> list[tuple[Path, Outcome]]:
    """Every file through ``Pipeline.analyze``, a few at a time so their faces share classifier batches."""
    async with open_pipeline(settings, Metrics()) as pipeline:
        slots = asyncio.Semaphore(settings.pipeline_threads * 2)

        async def one(path: Path) -> tuple[Path, Outcome]:
            async with slots:
                try:
                    analysis = await pipeline.analyze(path.read_bytes(), options)
                except DeepFERError as error:
                    return path, ErrorBody(code=error.code, message=error.message)
                except OSError as error:
                    return path, ErrorBody(code="unreadable", message=str(error))
            response = PredictResponse.build(analysis.width, analysis.height, analysis.faces, analysis.model)
            return path, (analysis, response)

        return list(await asyncio.gather(*(one(path) for path in paths)))


def _as_json(path: Path, outcome: Outcome) -> dict[str, object]:
    if isinstance(outcome, ErrorBody):
        return {"path": str(path), "error": outcome.model_dump()}
    return {"path": str(path), **outcome[1].model_dump()}


def _as_table(outcomes: list[tuple[Path, Outcome]]) -> str:
    header = f"{'image':<28} {'face':>4} {'box (x,y,w,h)':<20} {'score':>5}  {'emotion':<8} {'p':>5}"
    lines = [header, "-" * len(header)]
    for path, outcome in outcomes:
        if isinstance(outcome, ErrorBody):
            lines.append(f"{path.name:<28} error: {outcome.code}: {outcome.message}")
            continue
        if not outcome[1].faces:
            lines.append(f"{path.name:<28} {'-':>4} no face found")
        for number, face in enumerate(outcome[1].faces, start=1):
            box = f"{face.box.x},{face.box.y},{face.box.width},{face.box.height}"
            score = "-" if face.detection_score is None else f"{face.detection_score:.2f}"
            top = getattr(face.probabilities, face.emotion)
            lines.append(f"{path.name:<28} {number:>4} {box:<20} {score:>5}  {face.emotion:<8} {top:5.2f}")
    return "\n".join(lines)


def _annotate(data: bytes, analysis: Analysis, settings: Settings) -> NDArray[np.uint8]:
    """The decoded image (orientation applied, so boxes line up) with each face's box and top emotion."""
    image = decode(data, max_pixels=settings.max_pixels, max_pixel_scans=settings.max_pixel_scans)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face in analysis.faces:
        x, y, width, height = face.box
        cv2.rectangle(image, (x, y), (x + width, y + height), (0, 200, 0), thickness)
        label = f"{face.emotion} {face.probabilities[LABELS.index(face.emotion)]:.2f}"
        cv2.putText(
            image, label, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (0, 200, 0), thickness
        )
    return image


def _annotated_name(template: Path, source: Path) -> Path:
    return template.with_name(f"{template.stem}-{source.stem}{template.suffix or '.jpg'}")


COMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_serve,
    _add_predict,
    add_video_command,
)

if __name__ == "__main__":
    sys.exit(main())
