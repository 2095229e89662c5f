"""What goes into ``metadata_props`` and the JSON record beside the exported model.

Read from the training run folder (``run.json`` written by ``training.train``), so the ONNX file carries the
seed, exact command, data checksum and metrics of the run that produced it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from deepfer.contract import LABELS, MetadataKey


def run_record(model_path: Path) -> dict[str, Any]:
    """The ``run.json`` beside a ``best.keras``; empty when the model came from elsewhere."""
    record_path = model_path.parent / "run.json"
    return json.loads(record_path.read_text()) if record_path.is_file() else {}


def build_metadata(
    record: dict[str, Any],
    *,
    name: str,
    version: str,
    test_time_augmentation: bool,
    smoothing_sigma: float,
    temperature: float = 1.0,
    metrics: dict[str, Any] | None = None,
) -> dict[str, str]:
    """metadata_props values (all strings, JSON where structured), in ``MetadataKey`` names."""
    config = record.get("config", {})
    crop = config.get("crop", 48)
    metadata = {
        MetadataKey.LABELS: json.dumps(list(LABELS)),
        MetadataKey.NAME: name,
        MetadataKey.VERSION: version,
        MetadataKey.DATA_SHA256: record.get("data", {}).get("sha256", "unknown"),
        MetadataKey.COMMAND: record.get("command", "unknown"),
        MetadataKey.SEED: str(config.get("seed", "unknown")),
        MetadataKey.CONFIG: json.dumps(config, sort_keys=True),
        MetadataKey.METRICS: json.dumps(metrics if metrics is not None else record.get("metrics", {}), sort_keys=True),
        MetadataKey.TTA: "horizontal_flip_mean" if test_time_augmentation else "none",
        MetadataKey.SMOOTHING: f"gaussian_3x3_sigma_{smoothing_sigma:g}" if smoothing_sigma else "none",
        MetadataKey.CROP: f"centre_{crop}" if crop != 48 else "none",
        MetadataKey.TEMPERATURE: f"{temperature:.6g}",
        MetadataKey.EPOCHS: str(record.get("epochs_trained", "unknown")),
    }
    if "teacher" in record:  # a distilled student: which file taught it, by hash, and how much of each target
        teacher = {**record["teacher"], "weight": config.get("teacher_weight")}
        metadata[MetadataKey.TEACHER] = json.dumps(teacher, sort_keys=True)
    return metadata


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
