"""EmotionClassifier refuses every way a file can break the contract, with a message naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepfer.contract import LABELS, MetadataKey
from deepfer.engine.classifier import EmotionClassifier
from deepfer.errors import ModelLoadError
from deepfer.settings import Settings

MODEL = Settings().classifier_path


def test_shipped_model_loads_and_answers_probabilities() -> None:
    classifier = EmotionClassifier(MODEL)
    faces = np.random.default_rng(1).uniform(0, 255, (5, 48, 48, 1)).astype(np.float32)
    probabilities = classifier.run(faces)
    assert probabilities.shape == (5, len(LABELS)) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert classifier.run(np.zeros((0, 48, 48, 1), np.float32)).shape == (0, len(LABELS))
    assert len(classifier.model.sha256) == 64 and classifier.model.version


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "not found"), (b"", "cannot load"), (b"not a protobuf", "cannot load"), ("truncated", "cannot load")],
)
def test_missing_or_corrupt_file_fails_readably(tmp_path: Path, content: bytes | str | None, reason: str) -> None:
    path = tmp_path / "emotion.onnx"
    if content == "truncated":
        path.write_bytes(MODEL.read_bytes()[:5000])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=reason) as caught:
        EmotionClassifier(path)
    assert str(path) in str(caught.value)


def _rewritten(tmp_path: Path, edit: str) -> Path:
    """The shipped model with one contract property broken."""
    onnx = pytest.importorskip("onnx", reason="onnx (training extra) builds the broken models")
    model = onnx.load(str(MODEL))
    if edit == "labels":
        for prop in model.metadata_props:
            if prop.key == MetadataKey.LABELS:
                prop.value = json.dumps([*LABELS[1:], LABELS[0]])
    elif edit == "no labels":
        kept = [prop for prop in model.metadata_props if prop.key != MetadataKey.LABELS]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
    elif edit == "input shape":
        model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 64
    path = tmp_path / f"{edit.replace(' ', '_')}.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(("edit", "reason"), [("labels", "labels"), ("no labels", "labels"), ("input shape", "input")])
def test_contract_breaking_model_fails_readably(tmp_path: Path, edit: str, reason: str) -> None:
    path = _rewritten(tmp_path, edit)
    with pytest.raises(ModelLoadError, match="breaks the emotion-model contract") as caught:
        EmotionClassifier(path)
    assert reason in str(caught.value)
