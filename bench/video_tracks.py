"""What ``deepfer video`` counts as a person and as a scene cut, measured on shots made from the public scenes.

    python -m bench.video_tracks [--scenes DIR] [--seconds 1.0] [--fps 25] [--limit N]

Each public scene (a background with pasted FER faces whose boxes are labelled) becomes one shot of ``--seconds``
at ``--fps``: the camera shakes (a random shift of up to 3 px, a 1 % zoom wobble), the sensor adds noise (sigma 3
grey levels) and the exposure drifts (gain 1 +- 3 %). Every frame goes through the service's own pipeline, as in
``deepfer video``. Then:

- Scores: the detection scores of boxes on a labelled face and of the extras (boxes on no labelled face).
- Births: the real ``Tracker`` on each shot's detections, for a grid of ``min_track_s`` x ``min_track_score``
  (``min_hits`` at its default): labelled faces that get an ID (recall), extras that get one (false tracks), and
  the time from a face's first frame to its ID.
- Cuts: the change between consecutive frames of a shot (shake, noise, drift, and a separate 4 px per frame pan),
  against the change between the first frames of every ordered pair of different scenes (a cut; 67 scenes, 4422
  pairs), for ``deepfer.video.cuts``' thumbnail correlation and three measures it was chosen over: the mean
  absolute difference of the same thumbnails, a 32-bin grey histogram and the grey levels' earth mover's distance.

Prints the figures and writes them as JSON (``bench/results/video_tracks-*.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from bench.record import save
from bench.scenes import DEFAULT_SCENES, read_scenes
from deepfer.settings import Settings
from deepfer.tracking.tracker import Sighting, Tracker, TrackerSettings
from deepfer.video import cuts
from deepfer.video.analysers import local_analyser
from deepfer.wire import PredictResponse
from tests.scenes import iou

UNIFORM = np.full(7, 1 / 7, dtype=np.float32)
MIN_TRACK_S = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
MIN_TRACK_SCORE = (0.0, 0.5, 0.6, 0.7, 0.8)


def shaken(image: NDArray[np.uint8], rng: np.random.Generator) -> NDArray[np.uint8]:
    """One frame of a hand-held camera on a still scene: shift, zoom wobble, exposure drift, sensor noise."""
    height, width = image.shape[:2]
    zoom = 1 + rng.uniform(-0.01, 0.01)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0, zoom)
    matrix[:, 2] += rng.uniform(-3, 3, size=2)
    moved = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    noisy = moved.astype(np.float32) * (1 + rng.uniform(-0.03, 0.03)) + rng.normal(0, 3, moved.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def panned(image: NDArray[np.uint8], shift_px: float) -> NDArray[np.uint8]:
    matrix = np.float32([[1, 0, shift_px], [0, 1, 0]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)


def thumbnail_change(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    """Mean absolute difference of the 32 x 18 grey thumbnails, 0..1."""
    return float(np.abs(cuts.thumbnail(a) - cuts.thumbnail(b)).mean() / 255)


def correlation_change(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    """deepfer.video.cuts' measure: (1 - Pearson r) / 2 of the thumbnails, blind to exposure (gain and offset)."""
    return cuts.change(cuts.thumbnail(a), cuts.thumbnail(b))


def grey_levels(image: NDArray[np.uint8]) -> NDArray[np.float64]:
    """Shares of the 256 grey levels in a 160 px wide copy."""
    small = cv2.resize(image, (160, round(image.shape[0] * 160 / image.shape[1])), interpolation=cv2.INTER_AREA)
    counts = np.bincount(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).ravel(), minlength=256)
    return np.asarray(counts / counts.sum(), dtype=np.float64)


def histogram_change(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    """Half the L1 distance of 32-bin grey histograms: the share of pixels that moved to another bin, 0..1."""
    return float(np.abs(grey_levels(a).reshape(32, 8).sum(1) - grey_levels(b).reshape(32, 8).sum(1)).sum() / 2)


def distribution_change(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    """Earth mover's distance of the grey distributions, in grey levels / 255."""
    return float(np.abs(np.cumsum(grey_levels(a)) - np.cumsum(grey_levels(b))).sum() / 255)


MEASURES = {
    "histogram": histogram_change,
    "thumbnail": thumbnail_change,
    "correlation": correlation_change,
    "distribution": distribution_change,
}


def percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return {"n": 0}
    points = {"min": 0, "p1": 1, "p5": 5, "p50": 50, "p95": 95, "p99": 99, "max": 100}
    return {"n": int(array.size), **{k: round(float(np.percentile(array, q)), 4) for k, q in points.items()}}


async def detect_shots(
    images: list[NDArray[np.uint8]], frames: int, seed: int
) -> tuple[list[list[NDArray[np.uint8]]], list[list[PredictResponse]]]:
    rng = np.random.default_rng(seed)
    shots = [[shaken(image, rng) for _ in range(frames)] for image in images]
    async with local_analyser(Settings()) as analyse:
        slots = asyncio.Semaphore(4)

        async def one(frame: NDArray[np.uint8]) -> PredictResponse:
            async with slots:
                return await analyse(frame)

        answers = [await asyncio.gather(*(one(frame) for frame in shot)) for shot in shots]
    return shots, answers


def on_face(box: tuple[float, ...], truth: list[list[float]]) -> int | None:
    """The labelled face this box is on (IoU >= 0.3, bench.scenes' rule), or None for an extra."""
    best = max(range(len(truth)), key=lambda i: iou(box, truth[i]), default=None)
    return best if best is not None and iou(box, truth[best]) >= 0.3 else None


def births(
    scenes: list[dict[str, Any]], answers: list[list[PredictResponse]], fps: float, settings: TrackerSettings
) -> dict[str, float]:
    """Labelled faces given an ID, extras given an ID (as tracks), and the delay from first frame to ID."""
    faces = named = false_tracks = 0
    delays: list[float] = []
    for scene, shot in zip(scenes, answers, strict=True):
        truth = [face["box"] for face in scene["faces"]]
        tracker = Tracker(settings)
        first_seen: dict[int, float] = {}
        named_at: dict[int, float] = {}
        extra_ids: set[int] = set()
        for index, answer in enumerate(shot):
            time_s = index / fps
            detections = [
                Sighting(
                    box=(float(f.box.x), float(f.box.y), float(f.box.width), float(f.box.height)),
                    probabilities=UNIFORM,
                    score=f.detection_score,
                )
                for f in answer.faces
            ]
            for face, tracked in zip(answer.faces, tracker.update(time_s, detections), strict=True):
                person = on_face((face.box.x, face.box.y, face.box.width, face.box.height), truth)
                if person is None:
                    if tracked.track_id is not None:
                        extra_ids.add(tracked.track_id)
                    continue
                first_seen.setdefault(person, time_s)
                if tracked.track_id is not None:
                    named_at.setdefault(person, time_s)
        faces += len(truth)
        named += len(named_at)
        false_tracks += len(extra_ids)
        delays += [named_at[p] - first_seen[p] for p in named_at]
    return {
        "faces": faces,
        "recall": round(named / faces, 4),
        "false_tracks": false_tracks,
        "mean_delay_s": round(float(np.mean(delays)), 3) if delays else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each scene's shot")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--limit", type=int, help="only the first N scenes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    scenes, images = read_scenes(args.scenes)
    scenes, images = scenes[: args.limit], images[: args.limit]
    frames = max(2, round(args.seconds * args.fps))
    shots, answers = asyncio.run(detect_shots(images, frames, args.seed))

    scores: dict[str, list[float]] = {"face": [], "extra": []}
    for scene, shot in zip(scenes, answers, strict=True):
        truth = [face["box"] for face in scene["faces"]]
        for answer in shot:
            for f in answer.faces:
                kind = "extra" if on_face((f.box.x, f.box.y, f.box.width, f.box.height), truth) is None else "face"
                scores[kind].append(float(f.detection_score or 0.0))
    record: dict[str, Any] = {
        "scenes": len(scenes),
        "frames_per_shot": frames,
        "fps": args.fps,
        "scores": {kind: percentiles(values) for kind, values in scores.items()},
    }
    print(f"{len(scenes)} shots of {frames} frames at {args.fps:g} fps")
    for kind, summary in record["scores"].items():
        print(f"  detection score, {kind}: {summary}")

    grid = []
    print("  min_track_s  min_track_score  recall  false tracks  mean delay s")
    for min_track_s in MIN_TRACK_S:
        for min_track_score in MIN_TRACK_SCORE:
            settings = TrackerSettings(min_track_s=min_track_s, min_track_score=min_track_score)
            row = {"min_track_s": min_track_s, "min_track_score": min_track_score}
            row |= births(scenes, answers, args.fps, settings)
            grid.append(row)
            print(
                f"  {min_track_s:11.2f}  {min_track_score:15.2f}  {row['recall']:6.3f}  {row['false_tracks']:12d}"
                f"  {row['mean_delay_s']:12.3f}"
            )
    record["births"] = grid

    within: dict[str, list[float]] = {name: [] for name in MEASURES}
    pan: dict[str, list[float]] = {name: [] for name in MEASURES}
    cuts: dict[str, list[float]] = {name: [] for name in MEASURES}
    firsts = [shot[0] for shot in shots]
    for name, change in MEASURES.items():
        for image, shot in zip(images, shots, strict=True):
            within[name] += [change(a, b) for a, b in itertools.pairwise(shot)]
            pan[name] += [change(panned(image, 4 * step), panned(image, 4 * step + 4)) for step in range(5)]
        # Every ordered pair of different scenes, on a sample of at most 60 scenes (3540 pairs) to stay quick.
        sample = firsts[:: max(1, len(firsts) // 60)]
        cuts[name] = [change(a, b) for i, a in enumerate(sample) for j, b in enumerate(sample) if i != j]
    record["cuts"] = {
        measure: {
            "within": percentiles(within[measure]),
            "pan": percentiles(pan[measure]),
            "cut": percentiles(cuts[measure]),
        }
        for measure in within
    }
    for measure, parts in record["cuts"].items():
        for part, summary in parts.items():
            print(f"  {measure} change, {part}: {summary}")
    save("video_tracks", record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
