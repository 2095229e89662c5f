"""The ONNX contract between the training pipeline, the exporter and every consumer of the model.

Kept in one place so that the exporter writes exactly what the service checks at load time, and an outside
tool can rely on it: one float32 input ``[N, 48, 48, 1]`` of raw grey pixels 0..255 (normalisation lives in
the graph), a first output float32 ``[N, 7]`` of softmax probabilities in ``LABELS`` order, and the metadata
keys below.
"""

from __future__ import annotations

from typing import Final

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
