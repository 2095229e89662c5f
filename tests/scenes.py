"""The public scenes' ground truth and what counts as finding a face in it: shared by the scene tests and the
benchmarks that score detection (``bench/detection_sweep.py``, ``bench/framing_fit.py``), so both judge alike.

A detection matches a ground-truth face (the pasted 48x48 FER face) at IoU >= 0.3: YuNet's box is tighter and
sits lower than FER's framing, so even a perfect detection overlaps the ground truth at only IoU 0.45-0.8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MATCH_IOU = 0.3

Box = list[float] | tuple[float, ...]  # x, y, width, height


def load_scenes(folder: Path) -> list[dict[str, Any]]:
    """``scenes.json``: one entry per image, ``{"image": name, "faces": [{"box": [x, y, w, h], "label": ...}]}``."""
    scenes: list[dict[str, Any]] = json.loads((folder / "scenes.json").read_text())
    return scenes


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
