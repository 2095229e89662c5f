"""``python -m training.compare``: the paired count behind docs/model.md's choices between candidate files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.compare import compare

MODELS = Path(__file__).resolve().parents[2] / "service" / "deepfer" / "models"


def test_only_the_faces_one_file_gets_right_count() -> None:
    labels = np.array([0, 1, 2, 3, 4, 5])
    result = compare(labels, np.array([0, 1, 2, 0, 0, 0]), np.array([0, 0, 0, 3, 0, 0]))
    assert (result.only_a_right, result.only_b_right, result.faces_apart) == (2, 1, 1)
    assert (result.accuracy_a, result.accuracy_b) == (0.5, 2 / 6)
    assert result.paired_spread == np.sqrt(3)


def test_the_shipped_files_are_compared_on_their_shared_validation_split(shared_dir: Path) -> None:
    data = shared_dir / "data" / "fer2013.zip"
    if not data.is_file():
        pytest.skip(f"FER2013 not found at {data}")
    command = [sys.executable, "-m", "training.compare", MODELS / "emotion-int8.onnx", MODELS / "emotion.onnx"]
    answer = subprocess.run([*map(str, command), "--data", str(data)], capture_output=True, text=True, check=True)
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    assert result["faces"] == 2872  # 10% of train/, held out by the seed in the files' own metadata
    assert result["faces_apart"] == result["only_a_right"] - result["only_b_right"]
    assert result["accuracy_a"] - result["accuracy_b"] == pytest.approx(result["faces_apart"] / result["faces"])
    assert result["only_a_right"] + result["only_b_right"] > 0  # int8 and float32 part on a few faces
