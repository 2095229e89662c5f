"""The public scenes end to end over HTTP: detection recall >= 95% with < 2% extra boxes and no blob (a box on the
background, overlapping no face); accuracy printed.

Matching (IoU >= 0.3, greedy one-to-one) lives in ``bench/scenes.py``, shared with ``bench/detection_sweep.py``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.scenes import iou, load_scenes, match


def test_public_scenes_end_to_end(scenes_dir: Path, server_url: str) -> None:
    scenes = load_scenes(scenes_dir)

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
    labelled = []  # (true label, predicted emotion) of every matched face
    blobs = []  # (scene, box) of every box that overlaps no face at all
    for scene, found in zip(scenes, answers, strict=True):
        boxes = [[face["box"][k] for k in ("x", "y", "width", "height")] for face in found]
        ground = [face["box"] for face in scene["faces"]]
        pairs = match(ground, boxes)
        labelled += [(scene["faces"][truth]["label"], found[index]["emotion"]) for truth, index in pairs]
        blobs += [(scene["image"], box) for box in boxes if not any(iou(face, box) for face in ground)]
    recall = len(labelled) / truths
    extra = (detections - len(labelled)) / truths
    accuracy = sum(label == emotion for label, emotion in labelled) / len(labelled)
    print(
        f"\npublic scenes: {len(scenes)} images, {truths} faces; recall {recall:.1%} ({len(labelled)}), "
        f"extra boxes {extra:.1%} ({detections - len(labelled)}), blobs {len(blobs)}, "
        f"emotion accuracy of matched faces {accuracy:.1%}"
    )
    assert recall >= 0.95
    assert extra < 0.02
    assert blobs == []
