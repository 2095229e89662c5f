"""EmotionClassifier: owns the emotion model's ONNX Runtime session and refuses a file that breaks the contract.

Knows nothing about asyncio or HTTP: ``run`` takes a batch and returns probabilities, synchronously. The batcher
decides when and on which thread it is called.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from deepfer.contract import INPUT_SHAPE, LABELS, MetadataKey, ModelContractError, check_contract
from deepfer.engine.onnx_sessions import Provider, open_session
from deepfer.errors import ModelLoadError

# A softmax row sums to 1 up to float32 rounding; anything further off means the graph does not end in softmax.
_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ModelRecord:
    """What GET /model and every prediction report about the classifier, read once from the file."""

    name: str
    version: str
    sha256: str
    path: Path
    input_name: str
    metrics: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


class EmotionClassifier:
    """One session over ``emotion.onnx``; checked against ``deepfer.contract`` and a canary batch at load."""

    def __init__(self, path: Path, *, provider: Provider = "cpu", intra_op_threads: int = 1) -> None:
        self._session = open_session(path, provider=provider, intra_op_threads=intra_op_threads)
        try:
            check_contract(self._session)
        except ModelContractError as error:
            raise ModelLoadError(f"{path} breaks the emotion-model contract: {error}") from None
        self._input_name = self._session.get_inputs()[0].name
        self._output_name = self._session.get_outputs()[0].name
        self.model = _read_record(path, self._session.get_modelmeta().custom_metadata_map, self._input_name)
        self._prove_on_canary(path)

    def run(self, faces: NDArray[np.float32]) -> NDArray[np.float32]:
        """N x 48 x 48 x 1 float32 raw 0..255 -> N x 7 float32 probabilities in ``LABELS`` order."""
        if len(faces) == 0:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        (probabilities,) = self._session.run([self._output_name], {self._input_name: faces})
        return np.asarray(probabilities, dtype=np.float32)

    def run_in_batches(self, faces: NDArray[np.float32], batch_size: int = 256) -> NDArray[np.float32]:
        """``run`` over an offline set of thousands of faces (evaluation, calibration) a slice at a time, so the
        activations held at once stay bounded (the first feature map alone is 295 KB per face)."""
        parts = [self.run(faces[start : start + batch_size]) for start in range(0, len(faces), batch_size)]
        return np.concatenate(parts) if parts else self.run(faces)

    def _prove_on_canary(self, path: Path) -> None:
        """The contract's shapes say nothing about values: a graph exported without its softmax passes them, and so
        does one whose weights diverged to NaN (every answer null, every label "angry"). A load, at startup or in
        a reload, runs the canary faces and refuses the file unless each gets finite probabilities summing to 1."""
        names, faces = zip(*_canary_faces().items(), strict=True)
        output = self.run(np.stack(faces))
        if output.shape != (len(faces), len(LABELS)):
            raise ModelLoadError(f"{path} breaks the emotion-model contract: canary output has shape {output.shape}")
        not_finite = [name for name, row in zip(names, output, strict=True) if not np.isfinite(row).all()]
        if not_finite:
            raise ModelLoadError(
                f"{path} breaks the emotion-model contract: outputs NaN or infinity for the canary faces "
                f"{', '.join(not_finite)}"
            )
        sums = output.sum(axis=1)
        if (output < 0).any() or (output > 1 + _SUM_TOLERANCE).any() or np.abs(sums - 1).max() > _SUM_TOLERANCE:
            raise ModelLoadError(
                f"{path} breaks the emotion-model contract: first output is not softmax probabilities "
                f"(canary row sums {sums.round(4).tolist()})"
            )


def _canary_faces() -> dict[str, NDArray[np.float32]]:
    """48 x 48 x 1 float32 0..255 faces no classifier may answer with NaN: blank ones (black, grey, white), where a
    per-image normalisation divides by a zero spread, noise, and a gradient, batched together as the batcher does."""
    blank = np.ones(INPUT_SHAPE, dtype=np.float32)
    ramp = np.linspace(0, 255, INPUT_SHAPE[0], dtype=np.float32)
    return {
        "black": 0 * blank,
        "grey": 128 * blank,
        "white": 255 * blank,
        "noise": np.random.default_rng(0).uniform(0, 255, INPUT_SHAPE).astype(np.float32),
        "gradient": np.broadcast_to(ramp[None, :, None], INPUT_SHAPE).astype(np.float32),
    }


def _read_record(path: Path, metadata: dict[str, str], input_name: str) -> ModelRecord:
    try:
        metrics = json.loads(metadata.get(MetadataKey.METRICS, "{}"))
    except json.JSONDecodeError:
        metrics = {}
    return ModelRecord(
        name=metadata.get(MetadataKey.NAME, path.stem),
        version=metadata.get(MetadataKey.VERSION, "unknown"),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        path=path,
        input_name=input_name,
        metrics=metrics if isinstance(metrics, dict) else {},
        metadata={key: value for key, value in metadata.items() if key not in (MetadataKey.METRICS,)},
    )
