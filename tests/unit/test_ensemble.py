"""The ensemble graph in seconds, on the committed models and faces: composition, temperature, split checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from deepfer.contract import LABELS, MetadataKey
from export.ensemble import (
    averaged_graph,
    ensemble_metadata,
    member_accuracies,
    member_summary,
    shared_split,
    with_metadata,
)
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


def retrained(member: onnx.ModelProto, **changes: str) -> onnx.ModelProto:
    """A copy of ``member`` whose metadata says it is another run: so a member's record mixed up with another's
    shows (the two committed members are one run, float32 and int8, with the same version, command and config)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(member)
    for entry in copy.metadata_props:
        entry.value = changes.get(entry.key, entry.value)
    return copy


def test_the_ensemble_file_records_each_member_and_the_split_it_was_chosen_on(
    members: list[onnx.ModelProto],
) -> None:
    """``ensemble_members`` lists every member in order with its own version, command, config, epochs, data hash,
    temperature, test-time settings and metrics (what /model and docs/model.md show); ``training_config`` records
    the members' shared validation split, which evaluation rebuilds from it (``training.data.validation_faces``)."""
    first = {e.key: e.value for e in members[0].metadata_props}
    seed = json.loads(first[MetadataKey.CONFIG])["seed"]
    config = {**json.loads(first[MetadataKey.CONFIG]), "seed": seed + 1, "dropout": 0.3}  # another run, same split
    command = first[MetadataKey.COMMAND].replace(f"--seed {seed}", f"--seed {seed + 1}")
    assert command != first[MetadataKey.COMMAND]
    other = retrained(
        members[1],
        **{
            MetadataKey.VERSION: "m5",
            MetadataKey.COMMAND: command,
            MetadataKey.CONFIG: json.dumps(config),
            MetadataKey.EPOCHS: "57",
            MetadataKey.TEMPERATURE: "0.91",
        },
    )
    protos, files = [members[0], other], [Path("m4.onnx"), Path("m5.onnx")]
    summaries = [member_summary(proto, file) for proto, file in zip(protos, files, strict=True)]
    metadata = ensemble_metadata(
        summaries, shared_split(summaries), 0.8, name="ensemble", version="e0", calibrated_for="ece"
    )
    stored_file = with_metadata(averaged_graph(protos, temperature=0.8), metadata).SerializeToString()
    stored = {e.key: e.value for e in onnx.load_from_string(stored_file).metadata_props}

    expected = []
    for proto, file in zip(protos, files, strict=True):
        own = {e.key: e.value for e in proto.metadata_props}
        expected.append(
            {
                "file": file.name,
                "version": own[MetadataKey.VERSION],
                "command": own[MetadataKey.COMMAND],
                "config": json.loads(own[MetadataKey.CONFIG]),
                "epochs_trained": own[MetadataKey.EPOCHS],
                "data_sha256": own[MetadataKey.DATA_SHA256],
                "temperature": own[MetadataKey.TEMPERATURE],
                "test_time": {key: own[key] for key in (MetadataKey.TTA, MetadataKey.SMOOTHING, MetadataKey.CROP)},
                "metrics": json.loads(own[MetadataKey.METRICS]),
            }
        )
    assert json.loads(stored[MetadataKey.MEMBERS]) == expected
    # the two records really differ, in every field a mix-up could copy
    assert [member["config"]["seed"] for member in expected] == [seed, seed + 1]
    assert expected[0]["epochs_trained"] != expected[1]["epochs_trained"]
    assert expected[0]["temperature"] != expected[1]["temperature"]

    recorded = json.loads(stored[MetadataKey.CONFIG])
    assert recorded == {
        "ensemble": "mean of the members' probabilities, then one temperature",
        "temperature_minimises": "ece",
        "seed": 1337,  # evaluation tools read "seed" where a record has no "split_seed"
        "split_seed": 1337,
        "val_fraction": config["val_fraction"],
        "limit_per_class": config["limit_per_class"],
    }
    assert stored[MetadataKey.SEED] == "1337"
    assert stored[MetadataKey.DATA_SHA256] == first[MetadataKey.DATA_SHA256]
    assert stored[MetadataKey.TEMPERATURE] == "0.8"
    assert stored[MetadataKey.LABELS] == json.dumps(list(LABELS))


def test_members_with_the_same_file_name_keep_their_own_accuracy() -> None:
    """v3.2 and a new run are both exported as emotion.onnx: one member's figure overwrote the other's."""
    members = [{"file": "emotion.onnx"}, {"file": "emotion.onnx"}]
    labels = np.array([0, 1])
    right, wrong = np.eye(7)[[0, 1]], np.eye(7)[[1, 0]]
    assert member_accuracies(members, [right, wrong], labels) == {
        "member 0: emotion.onnx": 1.0,
        "member 1: emotion.onnx": 0.0,
    }
