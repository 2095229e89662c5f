"""The public scenes' ground truth and how a detection is matched to it, shared by the end-to-end test and the
detector sweep so both count recall and extra boxes the same way.

A detection matches a ground-truth face (the pasted 48x48 FER face) at IoU >= 0.3: YuNet's box is tighter and
sits lower than FER's framing, so even a perfect detection overlaps the ground truth at only IoU 0.45-0.8.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

MATCH_IOU = 0.3
SHARED_DIR = Path(os.environ.get("DEEPFER_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
DEFAULT_SCENES = SHARED_DIR / "data" / "scenes_public"

Box = list[float] | tuple[float, ...]  # x, y, width, height


def load_scenes(folder: Path) -> list[dict[str, Any]]:
    """``scenes.json``: one entry per image, ``{"image": name, "faces": [{"box": [x, y, w, h], "label": ...}]}``."""
    scenes: list[dict[str, Any]] = json.loads((folder / "scenes.json").read_text())
    return scenes


def read_scenes(folder: Path) -> tuple[list[dict[str, Any]], list[NDArray[np.uint8]]]:
    """The scenes and their decoded BGR images, for the bench scripts: exits naming what is missing or unreadable."""
    if not (folder / "scenes.json").is_file():
        raise SystemExit(f"no scenes.json in {folder} (set DEEPFER_SHARED_DIR or --scenes)")
    scenes = load_scenes(folder)
    images = [cv2.imread(str(folder / scene["image"])) for scene in scenes]
    if missing := [scene["image"] for scene, image in zip(scenes, images, strict=True) if image is None]:
        raise SystemExit(f"unreadable scenes in {folder}: {missing[:5]}")
    return scenes, images


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    width = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    overlap = width * height
    return overlap / (a[2] * a[3] + b[2] * b[3] - overlap)


def match(truth: list[Box], found: list[Box]) -> list[tuple[int, int]]:
    """Greedy one-to-one matching, each ground-truth face to its best unused detection: (truth, found) indices."""
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    for face_index, face in enumerate(truth):
        best, index = max(
            ((iou(face, box), index) for index, box in enumerate(found) if index not in used), default=(0.0, -1)
        )
        if best >= MATCH_IOU:
            used.add(index)
            pairs.append((face_index, index))
    return pairs
