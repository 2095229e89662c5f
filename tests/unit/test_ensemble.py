"""The ensemble graph in seconds, on the committed models and faces: composition, temperature, split checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from deepfer.contract import LABELS, MetadataKey
from export.ensemble import averaged_graph, member_accuracies, member_summary, shared_split, with_metadata
from export.faces import ExportError
from export.verify import onnx_answers
from tests.imaging import face_batch
from training.calibration import apply_temperature

MODELS = Path(__file__).resolve().parents[2] / "service" / "deepfer" / "models"


@pytest.fixture(scope="module")
def members() -> list[onnx.ModelProto]:
    return [onnx.load(str(MODELS / name)) for name in ("emotion.onnx", "emotion-int8.onnx")]


def test_the_graph_is_the_tempered_mean_of_its_members(members: list[onnx.ModelProto]) -> None:
    faces = face_batch()
    answers = [onnx_answers(m.SerializeToString(), faces) for m in members]
    ensemble = with_metadata(averaged_graph(members, temperature=1.7), {MetadataKey.LABELS: json.dumps(LABELS)})
    got = onnx_answers(ensemble.SerializeToString(), faces)
    expected = apply_temperature(np.mean(answers, axis=0), 1.7)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    # The two members disagree on some face, so the mean is not either member's answer.
    assert not np.allclose(answers[0], answers[1], atol=1e-3)


def test_members_sharing_the_split_agree_on_it(members: list[onnx.ModelProto]) -> None:
    summaries = [member_summary(m, Path(f"m{i}.onnx")) for i, m in enumerate(members)]
    split = shared_split(summaries)
    assert split["split_seed"] == 1337  # every shipped model was chosen on the split this seed draws
    recorded = {e.key: e.value for e in members[0].metadata_props}[MetadataKey.DATA_SHA256]
    assert split["data_sha256"] == recorded and len(recorded) == 64


def test_a_member_with_another_validation_split_is_refused(members: list[onnx.ModelProto]) -> None:
    summaries = [member_summary(m, Path(f"m{i}.onnx")) for i, m in enumerate(members)]
    summaries[1]["config"] = {**summaries[1]["config"], "split_seed": 7}
    with pytest.raises(ExportError, match="do not share one recorded validation split"):
        shared_split(summaries)


def test_the_members_metadata_is_kept(members: list[onnx.ModelProto]) -> None:
    summary = member_summary(members[0], MODELS / "emotion.onnx")
    metadata = {e.key: e.value for e in members[0].metadata_props}
    assert summary["version"] == metadata[MetadataKey.VERSION]
    assert summary["command"] == metadata[MetadataKey.COMMAND]
    assert summary["config"] == json.loads(metadata[MetadataKey.CONFIG])


def test_members_with_the_same_file_name_keep_their_own_accuracy() -> None:
    """v3.2 and a new run are both exported as emotion.onnx: one member's figure overwrote the other's."""
    members = [{"file": "emotion.onnx"}, {"file": "emotion.onnx"}]
    labels = np.array([0, 1])
    right, wrong = np.eye(7)[[0, 1]], np.eye(7)[[1, 0]]
    assert member_accuracies(members, [right, wrong], labels) == {
        "member 0: emotion.onnx": 1.0,
        "member 1: emotion.onnx": 0.0,
    }
