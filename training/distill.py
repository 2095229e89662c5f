"""Soft targets for a student network: a teacher's probabilities on each training face, mixed with its label.

Why precomputed on the clean faces rather than on each augmented view: the teacher (an ONNX average of several
networks, ``export.ensemble``) costs about as much per face as a training step's forward pass on these CPUs; once
per face it is a minute, once per step it would double every epoch. The teacher's probabilities already carry its
temperature (fitted on validation after averaging), so they are used as they are (Hinton's T = 1).

The target is ``(1 - teacher_weight) * one_hot(label) + teacher_weight * teacher``; ``--teacher-weight 1`` trains
on the teacher alone. Label smoothing still applies on top, as for any run. The teacher's answers are cached in
the run folder under its SHA-256, so a resumed run does not recompute them and a changed teacher is never reused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from deepfer.contract import LABELS
from deepfer.engine.classifier import EmotionClassifier

BATCH = 256


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def teacher_probabilities(teacher: Path, faces: NDArray[np.uint8], cache_dir: Path) -> NDArray[np.float32]:
    """N x 7 probabilities of ``teacher`` on N 48x48 faces, from the cache when this very teacher made them."""
    cache = cache_dir / f"teacher-{file_sha256(teacher)[:16]}-{len(faces)}.npy"
    if cache.is_file():
        return np.load(cache)
    classifier = EmotionClassifier(teacher, intra_op_threads=0)
    batches = [faces[start : start + BATCH] for start in range(0, len(faces), BATCH)]
    probabilities = np.concatenate([classifier.run(batch[..., np.newaxis].astype(np.float32)) for batch in batches])
    partial = cache.with_suffix(".partial.npy")
    np.save(partial, probabilities)
    partial.replace(cache)  # never a half-written cache for a resumed run to trust
    return probabilities


def soft_targets(labels: NDArray[np.int64], teacher: NDArray[np.float32], weight: float) -> NDArray[np.float32]:
    """Each face's training target: its one-hot label and the teacher's probabilities, mixed by ``weight``."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"teacher_weight must be within 0..1, got {weight}")
    one_hot = np.eye(len(LABELS), dtype=np.float32)[labels]
    mixed: NDArray[np.float32] = ((1.0 - weight) * one_hot + weight * teacher).astype(np.float32)
    return mixed
