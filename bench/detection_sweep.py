"""Detector recall, extra boxes and cost on the public scenes, by frame size and score threshold.

    python -m bench.detection_sweep
    python -m bench.detection_sweep --max-side 640 512 480 --thresholds 0.3 0.4 0.5
    python -m bench.detection_sweep --enlarge 3 --max-side 512 --thresholds 0.3   # as 1920x1440 camera frames

The calibration behind ``detection_score_threshold`` and ``detection_max_side_px``: every scene is detected once
per frame size at the lowest threshold, and the higher thresholds filter those detections (NMS keeps the
higher-scoring box of any overlapping pair, so filtering after NMS equals detecting at the higher threshold).
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

import cv2

from bench.local_service import REPO
from bench.scenes import DEFAULT_SCENES, read_scenes
from deepfer.engine.detect import FaceDetector
from deepfer.settings import Settings
from tests.scenes import match

RESULTS = REPO / "bench" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder with scenes.json")
    parser.add_argument("--max-side", type=int, nargs="+", default=[640, 576, 512, 480, 416])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.35, 0.4, 0.45, 0.5, 0.6])
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
    print(f"{'max side':>9} {'threshold':>9} {'recall':>8} {'extra':>7} {'cpu ms/img':>11}")
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
        for threshold in sorted(args.thresholds):
            matched = extra = 0
            for scene, detections in zip(scenes, found, strict=True):
                boxes = [list(d.box) for d in detections if d.score >= threshold]
                truth = [[value * args.enlarge for value in face["box"]] for face in scene["faces"]]
                pairs = len(match(truth, boxes))
                matched, extra = matched + pairs, extra + len(boxes) - pairs
            row = {
                "max_side_px": max_side,
                "threshold": threshold,
                "recall": round(matched / truths, 4),
                "extra_per_face": round(extra / truths, 4),
                "detector_cpu_ms_per_image": round(cpu_ms, 2),
            }
            rows.append(row)
            print(f"{max_side:>9} {threshold:>9} {row['recall']:>8.1%} {row['extra_per_face']:>7.1%} {cpu_ms:>11.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"detection_sweep-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(
        json.dumps({"scenes": str(args.scenes), "enlarge": args.enlarge, "faces": truths, "rows": rows}, indent=2)
        + "\n"
    )
    print(f"saved {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
