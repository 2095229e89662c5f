"""The ONNX contract between the training pipeline, the exporter and every consumer of the model.

Kept in one place so that the exporter writes exactly what the service checks at load time, and an outside
tool can rely on it: one float32 input ``[N, 48, 48, 1]`` of raw grey pixels 0..255 (normalisation lives in
the graph), a first output float32 ``[N, 7]`` of softmax probabilities in ``LABELS`` order, and the metadata
keys below.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

#: The seven FER2013 emotions, in the classifier's output order (FER2013's own 0..6 coding).
LABELS: Final[tuple[str, ...]] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

FACE_SIZE: Final[int] = 48
INPUT_SHAPE: Final[tuple[int, int, int]] = (FACE_SIZE, FACE_SIZE, 1)


class MetadataKey:
    """Keys of ``metadata_props`` in the exported ONNX file."""

    LABELS: Final[str] = "labels"  # JSON list of class names in output order
    NAME: Final[str] = "model_name"
    VERSION: Final[str] = "version"
    DATA_SHA256: Final[str] = "training_data_sha256"
    COMMAND: Final[str] = "training_command"
    SEED: Final[str] = "training_seed"
    METRICS: Final[str] = "metrics"  # JSON object of test/validation metrics
    CONFIG: Final[str] = "training_config"  # JSON object of hyper-parameters
    TTA: Final[str] = "test_time_augmentation"
    SMOOTHING: Final[str] = "test_time_smoothing"  # in-graph smoothing before the network, or "none"
    CROP: Final[str] = "test_time_crop"  # the part of the 48 px face the network sees, e.g. "centre_40"
    TEMPERATURE: Final[str] = "temperature"  # calibration temperature applied in the graph ("1" = none)
    EPOCHS: Final[str] = "epochs_trained"  # epochs behind these weights, warm-started ancestors included
    MEMBERS: Final[str] = "ensemble_members"  # JSON list: each averaged network's version, recipe, epochs, scores
    TEACHER: Final[str] = "distillation_teacher"  # JSON: a student's teacher file (path, SHA-256) and its weight


class ModelContractError(Exception):
    """A classifier file breaks the contract: raised at load time so a bad model never serves a request."""


def check_contract(session: InferenceSession) -> None:
    """Refuse a session whose inputs, outputs or labels differ from the contract, with a readable reason."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ModelContractError(f"expected exactly one input, found {len(inputs)}")
    face = inputs[0]
    if face.type != "tensor(float)" or list(face.shape[1:]) != list(INPUT_SHAPE) or len(face.shape) != 4:
        raise ModelContractError(f"input must be float32 [N,48,48,1], found {face.type} {face.shape}")
    if (
        not outputs
        or outputs[0].type != "tensor(float)"
        or len(outputs[0].shape) != 2
        or outputs[0].shape[1] != len(LABELS)
    ):
        found = (outputs[0].type, outputs[0].shape) if outputs else "no output"
        raise ModelContractError(f"first output must be float32 [N,{len(LABELS)}], found {found}")
    metadata = session.get_modelmeta().custom_metadata_map
    try:
        labels = json.loads(metadata[MetadataKey.LABELS])
    except (KeyError, json.JSONDecodeError) as error:
        raise ModelContractError(f"metadata {MetadataKey.LABELS!r} missing or not JSON: {error}") from None
    if tuple(labels) != LABELS:
        raise ModelContractError(f"labels {labels} differ from the expected {list(LABELS)}")
