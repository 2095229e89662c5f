"""Training and validation batches as numpy arrays, the same on every Keras backend.

Why not tf.data: the same training runs under JAX on an accelerator (the GPU path in docs/model.md), where there is
no TensorFlow. Every other augmentation is the network's first layer (``training.augment``, in ``keras.ops``),
so what is left for the host is a shuffle and a JPEG re-compression of a quarter of the faces: about 1 ms of a
128-face batch with OpenCV, against seconds for the step itself on this CPU.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import keras
import numpy as np
from numpy.typing import NDArray

from deepfer.contract import LABELS
from training.config import TrainConfig
from training.data import FaceSet

# JPEG qualities of the re-compressed faces, inclusive: the range webcams and call recordings were seen to use.
JPEG_QUALITY = (15, 60)


class FaceBatches(keras.utils.PyDataset):
    """(float32 B x 48 x 48 x 1 in 0..255, one-hot labels) batches; shuffled and re-compressed when ``training``.

    Randomness comes from one generator seeded with ``config.seed``, so a run's batches are reproducible.
    """

    def __init__(
        self,
        faces: FaceSet,
        config: TrainConfig,
        *,
        training: bool = False,
        targets: NDArray[np.float32] | None = None,
    ) -> None:
        """``targets``: N x 7 training targets (a distilled run's soft ones); one-hot labels when absent."""
        super().__init__()  # in this process, no workers: a batch costs about a millisecond
        self._faces = faces.faces
        one_hot = keras.utils.to_categorical(faces.labels, len(LABELS)).astype(np.float32)
        self._labels = one_hot if targets is None else targets
        self._batch_size = config.batch_size
        self._training = training
        self._jpeg_p = config.jpeg_p if training else 0.0
        self._rng = np.random.default_rng(config.seed)
        self._order = np.arange(len(faces))
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self._order) / self._batch_size)

    def __getitem__(self, index: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        chosen = self._order[index * self._batch_size : (index + 1) * self._batch_size]
        faces = self._faces[chosen]
        if self._jpeg_p > 0:
            faces = np.stack([self._maybe_recompress(face) for face in faces])
        return faces[..., np.newaxis].astype(np.float32), self._labels[chosen]

    def on_epoch_end(self) -> None:
        if self._training:
            self._rng.shuffle(self._order)

    def _maybe_recompress(self, face: NDArray[np.uint8]) -> Any:
        """With probability ``jpeg_p``, the face encoded and decoded as JPEG at a random quality."""
        if self._rng.random() >= self._jpeg_p:
            return face
        quality = int(self._rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
        encoded = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
        return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
