"""The single definition of a classifier input: how a face becomes a 48x48 grey uint8 array.

Training, evaluation and serving all call these functions, so a face seen at serving time is framed, greyed
and resampled exactly as the faces the model learnt from. Normalisation is not done here: it lives inside the
ONNX graph, and every consumer feeds raw 0..255 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from service.contract import FACE_SIZE


def to_grey(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) uint8 -> HxW uint8 grey."""
    if image.ndim == 2:
        return image
    channels = image.shape[2]
    if channels == 1:
        return image[:, :, 0]
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"expected 1, 3 or 4 channels, got {channels}")


def resize_face(grey: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Any HxW grey face crop -> 48x48 uint8.

    INTER_AREA when shrinking, because it averages like a camera sensor and does not alias the fine texture
    (wrinkles, teeth) that separates the emotions; INTER_CUBIC when enlarging a small face.
    """
    height, width = grey.shape
    if (height, width) == (FACE_SIZE, FACE_SIZE):
        return grey
    shrinking = height * width > FACE_SIZE * FACE_SIZE
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(grey, (FACE_SIZE, FACE_SIZE), interpolation=interpolation)


def face_from_crop(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """An image that already is a face framed like FER2013 -> 48x48 uint8 grey.

    Used for the dataset's own faces in training and evaluation and for ``detect=false`` requests, so that both
    produce identical arrays for the same picture.
    """
    return resize_face(to_grey(image))


def to_batch(faces: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
    """k faces of 48x48 uint8 -> k x 48 x 48 x 1 float32 with raw values 0..255 (the ONNX input layout)."""
    if not faces:
        return np.zeros((0, FACE_SIZE, FACE_SIZE, 1), dtype=np.float32)
    return np.stack(faces).astype(np.float32)[..., np.newaxis]
