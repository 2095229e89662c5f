"""CPU per image of each pipeline stage on the public scenes, one image at a time, by OpenCV thread count.

    python -m bench.stages
    python -m bench.stages --opencv-threads 1 2 --repeats 3

The split behind the service's CPU per image (``bench/http_load.py`` measures the whole): the service's own
code for decode, detect (shrink + YuNet + decoding of its outputs), align and classify, with the service's
default settings. CPU is process time, so OpenCV's and ONNX Runtime's helper threads are counted; wall time is
printed beside it, since a helper thread only pays off where it shortens the wall time. Printed and saved as
JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import cv2

from bench.record import save
from bench.scenes import DEFAULT_SCENES
from deepfer.engine.align import align_face, to_batch
from deepfer.engine.classifier import EmotionClassifier
from deepfer.engine.decode import decode
from deepfer.engine.detect import FaceDetector
from deepfer.engine.models import load_models
from deepfer.settings import Settings
from tests.scenes import load_scenes

STAGES = ("decode", "detect", "align", "classify")
T = TypeVar("T")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder with scenes.json")
    parser.add_argument("--opencv-threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2, help="passes over the scenes per thread count")
    return parser.parse_args(argv)


class StageClock:
    """Accumulates CPU and wall seconds per stage."""

    def __init__(self) -> None:
        self.cpu = dict.fromkeys(STAGES, 0.0)
        self.wall = dict.fromkeys(STAGES, 0.0)

    def time(self, stage: str, work: Callable[[], T]) -> T:
        cpu, wall = time.process_time(), time.perf_counter()
        result = work()
        self.cpu[stage] += time.process_time() - cpu
        self.wall[stage] += time.perf_counter() - wall
        return result


def analyse(
    data: bytes, detector: FaceDetector, classifier: EmotionClassifier, settings: Settings, clock: StageClock
) -> None:
    """One image through the stages the service runs, each timed on ``clock``."""
    image = clock.time(
        "decode", lambda: decode(data, max_pixels=settings.max_pixels, max_pixel_scans=settings.max_pixel_scans)
    )
    found = clock.time("detect", lambda: detector.detect(image))
    crops = clock.time("align", lambda: [align_face(image, face.box, face.landmarks) for face in found])
    clock.time("classify", lambda: classifier.run(to_batch(crops)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.scenes / "scenes.json").is_file():
        raise SystemExit(f"no scenes.json in {args.scenes} (set DEEPFER_SHARED_DIR or --scenes)")
    encoded = [(args.scenes / scene["image"]).read_bytes() for scene in load_scenes(args.scenes)]
    settings = Settings()
    detector, classifier = load_models(settings)
    rows = []
    print(f"{len(encoded)} scenes, {args.repeats} passes each; CPU (wall) ms per image")
    print(f"{'opencv threads':>14} " + " ".join(f"{stage:>16}" for stage in (*STAGES, "total")))
    for threads in args.opencv_threads:
        cv2.setNumThreads(threads)
        for data in encoded[:3]:  # warm-up: ORT's lazy initialisation is not part of the cost
            analyse(data, detector, classifier, settings, StageClock())
        clock = StageClock()
        for _ in range(args.repeats):
            for data in encoded:
                analyse(data, detector, classifier, settings, clock)
        images = len(encoded) * args.repeats
        cpu = {stage: round(clock.cpu[stage] * 1000 / images, 2) for stage in STAGES}
        wall = {stage: round(clock.wall[stage] * 1000 / images, 2) for stage in STAGES}
        cpu["total"], wall["total"] = round(sum(cpu.values()), 2), round(sum(wall.values()), 2)
        rows.append({"opencv_threads": threads, "cpu_ms_per_image": cpu, "wall_ms_per_image": wall})
        print(f"{threads:>14} " + " ".join(f"{f'{cpu[key]:.2f} ({wall[key]:.2f})':>16}" for key in cpu))
    record = {
        "scenes": str(args.scenes),
        "images": len(encoded),
        "repeats": args.repeats,
        "settings": settings.model_dump(mode="json", exclude={"api_keys"}),
        "rows": rows,
    }
    save("stages", record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
