"""The public scenes end to end over HTTP: detection recall >= 95% with < 2% extra boxes; accuracy printed.

A detection matches a ground-truth face (the pasted 48x48 FER face) at IoU >= 0.3: YuNet's box is tighter and
sits lower than FER's framing, so even a perfect detection overlaps the ground truth at only IoU 0.45-0.8.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

MATCH_IOU = 0.3


def iou(a: list[float], b: list[float]) -> float:
    width = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    overlap = width * height
    return overlap / (a[2] * a[3] + b[2] * b[3] - overlap)


def match(truth: list[dict[str, Any]], found: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Greedy one-to-one matching, each ground-truth face to its best unused detection."""
    pairs, used = [], set()
    for face in truth:
        scored = [
            (iou(face["box"], [d["box"][k] for k in ("x", "y", "width", "height")]), index)
            for index, d in enumerate(found)
            if index not in used
        ]
        best, index = max(scored, default=(0.0, -1))
        if best >= MATCH_IOU:
            used.add(index)
            pairs.append((face, found[index]))
    return pairs


def test_public_scenes_end_to_end(scenes_dir: Path, server_url: str) -> None:
    scenes = json.loads((scenes_dir / "scenes.json").read_text())

    def predict(scene: dict[str, Any]) -> list[dict[str, Any]]:
        with httpx.Client(base_url=server_url, timeout=30) as http:
            response = http.post("/predict", files={"file": (scenes_dir / scene["image"]).read_bytes()})
        assert response.status_code == 200, response.text
        faces: list[dict[str, Any]] = response.json()["faces"]
        return faces

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(predict, scenes))

    truths = sum(len(scene["faces"]) for scene in scenes)
    detections = sum(len(found) for found in answers)
    pairs = [pair for scene, found in zip(scenes, answers, strict=True) for pair in match(scene["faces"], found)]
    recall = len(pairs) / truths
    extra = (detections - len(pairs)) / truths
    accuracy = sum(face["label"] == detected["emotion"] for face, detected in pairs) / len(pairs)
    print(
        f"\npublic scenes: {len(scenes)} images, {truths} faces; recall {recall:.1%} ({len(pairs)}), "
        f"extra boxes {extra:.1%} ({detections - len(pairs)}), emotion accuracy of matched faces {accuracy:.1%}"
    )
    assert recall >= 0.95
    assert extra < 0.02
