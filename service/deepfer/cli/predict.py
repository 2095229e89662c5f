"""``deepfer predict IMAGE...``: the service's pipeline on image files, locally or through a service (``--url``).

deepfer predict a.jpg --annotate out.jpg       one image: boxes and labels drawn into out.jpg
deepfer predict a.jpg b.png --annotate out/    several: out/a.jpg, out/b.jpg (a folder, made if needed)
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from deepfer.cli.common import UsageError, add_url_options
from deepfer.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from deepfer.client.core import PredictOptions
    from deepfer.engine.pipeline import Options
    from deepfer.wire import ErrorBody, PredictResponse


def add_predict(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subcommands.add_parser(
        "predict", help="analyse image files with the service's pipeline, locally or through a service (--url)"
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--format", choices=("json", "table"), default="table")
    parser.add_argument("--no-detect", action="store_true", help="each image is one already-cropped face")
    parser.add_argument("--max-faces", type=int, help="at most this many faces per image")
    parser.add_argument("--min-face-size", type=int, default=0, help="ignore smaller faces (pixels)")
    parser.add_argument(
        "--min-score",
        type=_fraction,
        help="ignore faces the detector scored lower (0..1; default and floor: DEEPFER_DETECTION_SCORE_THRESHOLD)",
    )
    parser.add_argument(
        "--min-sharpness",
        type=float,
        help="ignore blurrier faces (quality.sharpness; default DEEPFER_MIN_FACE_SHARPNESS; 0 keeps them all)",
    )
    parser.add_argument(
        "--annotate",
        type=Path,
        metavar="OUT",
        help="draw boxes and labels: into the file OUT for one image; for several, OUT is a folder that gets "
        "<image stem>.jpg for each",
    )
    add_url_options(parser, "send the images to this service (e.g. http://127.0.0.1:8000) instead")
    parser.set_defaults(handler=_predict)


def _fraction(text: str) -> float:
    """A number from 0 to 1, refused by argparse's own usage error otherwise (as the service answers 422)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


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
    if args.min_sharpness is not None and args.min_sharpness < 0:
        raise UsageError(f"--min-sharpness {args.min_sharpness} is negative")
    if args.url:
        from deepfer.client.core import PredictOptions

        asked = PredictOptions(not args.no_detect, max_faces, args.min_face_size, args.min_score, args.min_sharpness)
        outcomes = _predict_remote(args.images, args.url, args.api_key, asked)
        images: dict[Path, NDArray[np.uint8]] = {}
    else:
        from deepfer.engine.pipeline import Options

        options = Options(
            detect=not args.no_detect,
            max_faces=max_faces,
            min_face_size=args.min_face_size,
            min_score=args.min_score or 0.0,
            min_sharpness=args.min_sharpness,
        )
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
    paths: list[Path], url: str, api_key: str | None, options: PredictOptions
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
                    path.read_bytes(),
                    detect=options.detect,
                    max_faces=options.max_faces,
                    min_face_size=options.min_face_size,
                    min_score=options.min_score,
                    min_sharpness=options.min_sharpness,
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
    from deepfer.wire import ErrorBody

    for path, outcome in outcomes:
        if isinstance(outcome, ErrorBody):
            notes[len(rows)] = f"error: {outcome.code}: {outcome.message}"
            rows.append((path.name, "", "", "", "", ""))
            continue
        faces = outcome.faces
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
