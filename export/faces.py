"""Real faces for the export's checks: the parity check against Keras and the int8 calibration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class ExportError(Exception):
    """The export cannot go on (missing data, a failed check); ``python -m export`` reports it in one line."""


def on_local_data(record: dict[str, Any], model: Path, data: Path) -> dict[str, Any]:
    """The run record with ``--data`` as its data, for a run trained elsewhere (the GPU path).

    Checked first against the ``data.json`` such a run brings back (the SHA-256 of the zip its train/ split was
    carried from, byte for byte), so a run is never exported against other faces than it was trained on. The
    exported metadata then names the local zip and its SHA-256, which is what evaluation and calibration on
    this machine rebuild the validation split from; the path and hash the run saw are kept beside them.
    """
    from training.data import sha256_of

    carried = model.resolve().parent / "data.json"
    if not carried.is_file():
        raise ExportError(f"--data is for a run trained elsewhere, and {carried} (its carried data) is missing")
    expected = json.loads(carried.read_text())["source_sha256"]
    if sha256_of(data) != expected:
        raise ExportError(f"--data {data} is not the data this run was carried from (sha256 {expected[:12]})")
    seen = record.get("data", {})
    trained_on = {"path": seen.get("path"), "sha256": seen.get("sha256")}
    local = {"path": str(data), "sha256": expected, "trained_on": trained_on}
    return {**record, "data": {**seen, **local}}


def record_faces(record: dict[str, Any], split: str, per_class: int) -> np.ndarray:
    """Real faces from the run's own data as N x 48 x 48 x 1 float32: ``test`` for the parity check,
    ``train`` (never ``test``) for int8 calibration.

    Falls back to uniform noise over 0..255 only for a parity check of a model whose training data is not
    reachable (a file made elsewhere), so the contract's value range is still exercised.
    """
    recorded = record.get("data", {}).get("path")
    data = Path(recorded) if recorded else None
    if data is not None and data.exists():
        from training.data import load_split

        return load_split(data, split, per_class).faces[..., np.newaxis].astype(np.float32)
    if split == "train":
        where = recorded or "the run record has no data path"
        raise ExportError(f"--int8 needs the training data for calibration; not reachable: {where}")
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, size=(64, 48, 48, 1)).astype(np.float32)
