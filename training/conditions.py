"""The image conditions cameras give, applied to 48x48 faces to measure how much accuracy each one costs.

Each condition is a deterministic function of the faces and a seed, so ``training.evaluate --conditions``
reproduces the same degraded copy of a split on any machine. Strengths are the ones issue #18 measured v3.1
against: sensor noise of sigma 12 grey levels, JPEG quality 20, a 1-pixel blur, dim light, low contrast,
a 12 degree tilt and a 12 px occluding patch.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from numpy.typing import NDArray

Faces = NDArray[np.uint8]  # N x 48 x 48


def sensor_noise(faces: Faces, rng: np.random.Generator) -> Faces:
    noisy = faces.astype(np.float32) + rng.normal(0.0, 12.0, faces.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def jpeg_q20(faces: Faces, rng: np.random.Generator) -> Faces:
    del rng
    return np.stack([cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 20])[1], 0) for f in faces])


def blur_1px(faces: Faces, rng: np.random.Generator) -> Faces:
    del rng
    return np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in faces])


def dim_light(faces: Faces, rng: np.random.Generator) -> Faces:
    """Under-exposure: every grey level scaled by 0.4, as a dark room with auto-exposure giving up."""
    del rng
    return np.rint(faces * 0.4).astype(np.uint8)


def low_contrast(faces: Faces, rng: np.random.Generator) -> Faces:
    """Half the contrast about each face's own mean grey."""
    del rng
    mean = faces.mean(axis=(1, 2), keepdims=True)
    return np.clip(np.rint((faces - mean) * 0.5 + mean), 0, 255).astype(np.uint8)


def tilt_12deg(faces: Faces, rng: np.random.Generator) -> Faces:
    """Rotated 12 degrees one way or the other (a head tilt the aligner did not undo)."""
    out = np.empty_like(faces)
    for index, face in enumerate(faces):
        angle = 12.0 if rng.random() < 0.5 else -12.0
        matrix = cv2.getRotationMatrix2D((23.5, 23.5), angle, 1.0)
        out[index] = cv2.warpAffine(face, matrix, (48, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def occlusion_12px(faces: Faces, rng: np.random.Generator) -> Faces:
    """A black 12x12 patch somewhere inside the central 40x40 (a hand, a microphone)."""
    out = faces.copy()
    for face in out:
        top, left = rng.integers(4, 44 - 12 + 1, size=2)
        face[top : top + 12, left : left + 12] = 0
    return out


CONDITIONS: dict[str, Callable[[Faces, np.random.Generator], Faces]] = {
    "sensor_noise_sigma12": sensor_noise,
    "jpeg_quality20": jpeg_q20,
    "blur_1px": blur_1px,
    "dim_light_x0.4": dim_light,
    "low_contrast_x0.5": low_contrast,
    "tilt_12deg": tilt_12deg,
    "occlusion_12px": occlusion_12px,
}


def apply_condition(name: str, faces: Faces, seed: int = 0) -> Faces:
    return CONDITIONS[name](faces, np.random.default_rng(seed))
