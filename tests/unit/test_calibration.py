"""The calibration scripts as a user runs them: ``bench/framing_fit.py`` re-measures the face framing that
``service/deepfer/engine/align.py`` ships, so these tests also catch a change (detector, thresholds, alignment)
that moves FER2013's framing away from the shipped constants.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deepfer.engine.align import FRAME_CENTRE_DY_PER_BOX_WIDTH, FRAME_SIDE_PER_BOX_WIDTH
from tests.servers import DATA, REPO

FRAMINGS = {"ground_truth_crop", "shipped_alignment", "same_frame_unrotated", "square_of_box", "raw_box"}


def framing_fit(out: Path, *args: str | Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.framing_fit", f"--out={out}", *map(str, args)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    record: dict[str, Any] = json.loads(out.read_text())
    assert set(record["accuracy"]) == FRAMINGS
    assert all(0.0 <= value <= 1.0 for value in record["accuracy"].values())
    return record


def test_framing_fit_finds_every_face_of_the_committed_scenes(tmp_path: Path) -> None:
    record = framing_fit(tmp_path / "fit.json", f"--scenes={DATA / 'scenes'}")
    assert record["matched"] == record["faces"] > 0
    # A handful of faces: only a gross drift of the framing shows here; the next test measures it properly.
    assert abs(record["side_per_box_width"]["median"] / FRAME_SIDE_PER_BOX_WIDTH - 1) < 0.2


def test_shipped_framing_matches_the_validation_faces(tmp_path: Path, shared_dir: Path) -> None:
    archive = shared_dir / "data" / "fer2013.zip"
    if not archive.is_file():
        pytest.skip(f"FER2013 zip not found at {archive}")
    record = framing_fit(tmp_path / "fit.json", f"--data={archive}", "--max-faces=300")
    assert record["faces"] == 300
    assert record["matched"] >= 270
    # The median of 300 faces spread ~17% lands within ~2% of the full split's; 6% would be a real drift.
    assert abs(record["side_per_box_width"]["median"] / FRAME_SIDE_PER_BOX_WIDTH - 1) < 0.06
    assert abs(record["centre_dy_per_box_width"] - FRAME_CENTRE_DY_PER_BOX_WIDTH) < 0.03
    assert abs(record["centre_dx_per_box_width"]) < 0.03
