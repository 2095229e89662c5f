"""Where FER2013's framing sits relative to a YuNet box, and what the framing is worth in accuracy.

    python -m bench.framing_fit --data ../shared/data/fer2013.zip    # scenes made from the validation split
    python -m bench.framing_fit                                       # the public scenes (PublicTest faces)

The calibration behind ``FRAME_SIDE_PER_BOX_WIDTH`` and ``FRAME_CENTRE_DY_PER_BOX_WIDTH`` in
``service/deepfer/engine/align.py``. Every ground-truth box is exactly a pasted 48x48 FER face, so for each face the
detector finds (shipped settings) the script measures the FER side and centre in units of the detected box's
width, and prints their medians and spreads next to the shipped constants. It then classifies the matched faces
(the served classifier) under five framings, from the ground-truth crop (the upper bound) to the raw detector box.

Choices are made on ``--data``: each face of the served classifier's validation split (the part of ``train/``
its training held out, rebuilt from its metadata) pasted, enlarged, into a 640x480 frame of smooth colour noise
like the public scenes'. The public scenes hold PublicTest faces, which no choice may be tuned on; they are the
check. Printed and saved as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from bench.local_service import REPO
from bench.scenes import DEFAULT_SCENES, read_scenes
from deepfer.contract import LABELS
from deepfer.engine.align import (
    FRAME_CENTRE_DY_PER_BOX_WIDTH,
    FRAME_SIDE_PER_BOX_WIDTH,
    align_face,
    face_from_crop,
    resize_face,
    to_batch,
    to_grey,
)
from deepfer.engine.detect import Detection
from deepfer.engine.models import load_models
from deepfer.settings import Settings
from tests.scenes import match
from training.data import FaceSet, sha256_of, split_errors_exit, validation_faces

RESULTS = REPO / "bench" / "results"
Image = NDArray[np.uint8]
Scene = tuple[Image, list[list[float]], list[int]]  # frame, ground-truth boxes, label indices


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder with scenes.json")
    parser.add_argument("--data", type=Path, help="FER2013 zip or folder: measure on its validation split instead")
    parser.add_argument("--seed", type=int, default=0, help="placement and background of the validation scenes")
    parser.add_argument("--max-faces", type=int, default=None, help="with --data: a random sample of this many faces")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default: bench/results/framing_fit-TIME.json)"
    )
    return parser.parse_args(argv)


def axis_aligned(image: Image, centre_x: float, centre_y: float, width: float, height: float) -> Image:
    """A crop (squashed to 48x48 if not square), borders replicated like ``align_face`` does, as a grey face."""
    size = (max(1, round(width)), max(1, round(height)))
    return resize_face(cv2.getRectSubPix(to_grey(image), size, (centre_x, centre_y)))


def framings(image: Image, truth: list[float], found: Detection) -> dict[str, Image]:
    """The same face under each framing, best-informed first."""
    x, y, width, height = found.box
    level = found.landmarks.copy()
    level[1, 1] = level[0, 1]  # both eyes at the same height: align_face then turns nothing
    tx, ty, side, _ = truth
    return {
        "ground_truth_crop": face_from_crop(image[ty : ty + side, tx : tx + side]),
        "shipped_alignment": align_face(image, found.box, found.landmarks),
        "same_frame_unrotated": align_face(image, found.box, level),
        "square_of_box": axis_aligned(image, x + width / 2, y + height / 2, max(width, height), max(width, height)),
        "raw_box": axis_aligned(image, x + width / 2, y + height / 2, width, height),
    }


def public_scenes(folder: Path) -> Iterator[Scene]:
    scenes, images = read_scenes(folder)
    for scene, image in zip(scenes, images, strict=True):
        yield image, [face["box"] for face in scene["faces"]], [LABELS.index(face["label"]) for face in scene["faces"]]


def validation_scenes(held: FaceSet, seed: int, max_faces: int | None) -> Iterator[Scene]:
    """One validation face per frame, 64-200 px (bicubic), anywhere on smooth colour noise."""
    rng = np.random.default_rng(seed)
    chosen = np.arange(len(held))
    if max_faces is not None and max_faces < len(held):
        chosen = np.sort(rng.choice(chosen, max_faces, replace=False))
    for index in chosen:
        noise = rng.integers(0, 256, (15, 20, 3), dtype=np.uint8)
        frame = cv2.GaussianBlur(cv2.resize(noise, (640, 480), interpolation=cv2.INTER_CUBIC), (0, 0), 8)
        side = int(rng.integers(64, 201))
        x, y = int(rng.integers(0, 640 - side)), int(rng.integers(0, 480 - side))
        face = cv2.resize(held.faces[index], (side, side), interpolation=cv2.INTER_CUBIC)
        frame[y : y + side, x : x + side] = face[..., np.newaxis]
        yield frame, [[x, y, side, side]], [int(held.labels[index])]


def spread(values: NDArray[np.float64]) -> float:
    """Interquartile range over the median: a scale-free spread that one odd face cannot move."""
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float((q3 - q1) / abs(median)) if median else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings()
    detector, classifier = load_models(settings)
    if args.data:
        metadata = classifier.model.metadata
        held, _ = validation_faces(settings.classifier_path, args.data, metadata, sha256_of(args.data))
        scenes = validation_scenes(held, args.seed, args.max_faces)
    else:
        scenes = public_scenes(args.scenes)
    side_ratio, dx, dy, labels = [], [], [], []
    crops: dict[str, list[Image]] = {}
    total = 0
    for image, truths, truth_labels in scenes:
        total += len(truths)
        detections = detector.detect(image)
        for truth_index, found_index in match(truths, [list(d.box) for d in detections]):
            truth, found = truths[truth_index], detections[found_index]
            x, y, width, height = found.box
            side_ratio.append(truth[2] / width)
            dx.append((truth[0] + truth[2] / 2 - (x + width / 2)) / width)
            dy.append((truth[1] + truth[3] / 2 - (y + height / 2)) / width)
            labels.append(truth_labels[truth_index])
            for name, face in framings(image, truth, found).items():
                crops.setdefault(name, []).append(face)

    fit = {
        "faces": total,
        "matched": len(labels),
        "side_per_box_width": {"median": float(np.median(side_ratio)), "spread": spread(np.array(side_ratio))},
        "centre_dx_per_box_width": float(np.median(dx)),
        "centre_dy_per_box_width": float(np.median(dy)),
        "shipped": {
            "side_per_box_width": FRAME_SIDE_PER_BOX_WIDTH,
            "centre_dy_per_box_width": FRAME_CENTRE_DY_PER_BOX_WIDTH,
        },
    }
    expected = np.array(labels)
    accuracy = {
        name: float(np.mean(classifier.run_in_batches(to_batch(faces)).argmax(axis=1) == expected))
        for name, faces in crops.items()
    }
    source = f"validation split of {args.data} (seed {args.seed})" if args.data else str(args.scenes)
    print(f"{source}: {len(labels)} of {total} faces matched; classifier {settings.classifier_path.name}")
    print(
        f"FER side / box width: median {fit['side_per_box_width']['median']:.3f} "
        f"(IQR/median {fit['side_per_box_width']['spread']:.1%}; shipped {FRAME_SIDE_PER_BOX_WIDTH})"
    )
    print(
        f"FER centre - box centre, in box widths: dx {fit['centre_dx_per_box_width']:+.3f}, "
        f"dy {fit['centre_dy_per_box_width']:+.3f} (shipped dy {FRAME_CENTRE_DY_PER_BOX_WIDTH:+.3f})"
    )
    for name, value in accuracy.items():
        print(f"{name:>22} {value:.1%}")
    out = args.out or RESULTS / f"framing_fit-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"source": source, "classifier": settings.classifier_path.name, **fit, "accuracy": accuracy}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    with split_errors_exit():
        raise SystemExit(main())
