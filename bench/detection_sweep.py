"""Detector recall, extra boxes and cost on the public scenes, by frame size, score threshold and sharpness floor.

    python -m bench.detection_sweep
    python -m bench.detection_sweep --max-side 640 512 480 --thresholds 0.3 0.4 0.5
    python -m bench.detection_sweep --max-side 512 --thresholds 0.2 0.3 --sharpness 0 50   # the quality defaults
    python -m bench.detection_sweep --enlarge 3 --max-side 512 --thresholds 0.3   # as 1920x1440 camera frames

The calibration behind ``detection_score_threshold``, ``detection_max_side_px`` and ``min_face_sharpness``: every
scene is detected once per frame size at the lowest threshold, and the higher thresholds filter those detections
(NMS keeps the higher-scoring box of any overlapping pair, so filtering after NMS equals detecting at the higher
threshold); each detection is aligned as the service aligns it and its 48x48 face's sharpness (``align.sharpness``)
filtered by each floor. "Blobs" are the extra boxes that overlap no ground-truth face at all (the colour noise of
the background taken for a face), as opposed to a second, misframed box on a real face.
Boxes are scored as the detector returns them (floats), where tests/http/test_scenes.py scores the API's boxes, rounded
and clipped to the image; at the shipped defaults both count 387 of 405 faces matched and 6 extra boxes.
``--enlarge`` scales every scene (bicubic) and its ground truth, for the cost and recall on larger frames.
Printed and saved as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2

from bench.local_service import REPO
from bench.scenes import DEFAULT_SCENES, read_scenes
from deepfer.engine.align import align_face, sharpness
from deepfer.engine.detect import Detection, FaceDetector
from deepfer.settings import Settings
from tests.scenes import iou, match

RESULTS = REPO / "bench" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder with scenes.json")
    parser.add_argument("--max-side", type=int, nargs="+", default=[640, 576, 512, 480, 416])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6])
    parser.add_argument("--sharpness", type=float, nargs="+", default=[0.0], help="sharpness floors (0: none)")
    parser.add_argument("--enlarge", type=float, default=1.0, help="scale the scenes and their ground truth first")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenes, images = read_scenes(args.scenes)
    if args.enlarge != 1.0:
        images = [
            cv2.resize(image, None, fx=args.enlarge, fy=args.enlarge, interpolation=cv2.INTER_CUBIC) for image in images
        ]
    truths = sum(len(scene["faces"]) for scene in scenes)
    settings = Settings()
    rows = []
    print(f"{len(scenes)} scenes, {truths} faces")
    print(
        f"{'max side':>9} {'threshold':>9} {'sharpness':>9} {'recall':>8} {'extra':>7} {'blobs':>5} {'cpu ms/img':>11}"
    )
    for max_side in args.max_side:
        detector = FaceDetector(
            settings.detector_path,
            score_threshold=min(args.thresholds),
            nms_threshold=settings.detection_nms_threshold,
            max_side_px=max_side,
        )
        detector.detect(images[0])  # ORT's lazy initialisation is not part of the cost
        started = time.process_time()
        found = [detector.detect(image) for image in images]
        cpu_ms = (time.process_time() - started) * 1000 / len(images)
        sharp = [
            [sharpness(align_face(image, d.box, d.landmarks)) for d in detections]
            for image, detections in zip(images, found, strict=True)
        ]
        for threshold in sorted(args.thresholds):
            for floor in sorted(args.sharpness):
                row = {
                    "max_side_px": max_side,
                    "threshold": threshold,
                    "min_sharpness": floor,
                    **score(scenes, found, sharp, threshold=threshold, floor=floor, enlarge=args.enlarge),
                    "detector_cpu_ms_per_image": round(cpu_ms, 2),
                }
                rows.append(row)
                print(
                    f"{max_side:>9} {threshold:>9} {floor:>9g} {row['recall']:>8.1%} {row['extra_per_face']:>7.1%} "
                    f"{row['blobs']:>5} {cpu_ms:>11.2f}"
                )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"detection_sweep-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(
        json.dumps({"scenes": str(args.scenes), "enlarge": args.enlarge, "faces": truths, "rows": rows}, indent=2)
        + "\n"
    )
    print(f"saved {out.relative_to(REPO)}")
    return 0


def score(
    scenes: list[dict[str, Any]],
    found: list[list[Detection]],
    sharp: list[list[float]],
    *,
    threshold: float,
    floor: float,
    enlarge: float,
) -> dict[str, float | int]:
    """Recall, extra boxes per face and blobs of the detections scoring ``threshold`` and sharp to ``floor``."""
    truths = sum(len(scene["faces"]) for scene in scenes)
    matched = extra = blobs = 0
    for scene, detections, sharpness_of in zip(scenes, found, sharp, strict=True):
        boxes = [
            list(d.box)
            for d, value in zip(detections, sharpness_of, strict=True)
            if d.score >= threshold and value >= floor
        ]
        truth = [[value * enlarge for value in face["box"]] for face in scene["faces"]]
        pairs = match(truth, boxes)
        used = {index for _, index in pairs}
        matched, extra = matched + len(pairs), extra + len(boxes) - len(pairs)
        blobs += sum(
            1 for index, box in enumerate(boxes) if index not in used and not any(iou(face, box) for face in truth)
        )
    return {
        "recall": round(matched / truths, 4),
        "matched": matched,
        "extra_per_face": round(extra / truths, 4),
        "extra": extra,
        "blobs": blobs,
    }


if __name__ == "__main__":
    raise SystemExit(main())
