"""Real faces for the export's checks: the parity check against Keras and the int8 calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class ExportError(Exception):
    """The export cannot go on (missing data, a failed check); ``python -m export`` reports it in one line."""


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
