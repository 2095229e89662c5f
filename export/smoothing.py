"""The optional test-time smoothing the exported graph applies before the network, defined once (no TensorFlow).

Off by default (``SMOOTHING_SIGMA`` 0): the training recipe (``training.augment``, by default and for m4 alike)
leaves no sharpness gap for it to close. Its crops are integer shifts, not resampled, and only half of the faces are
rotated and scaled, so the network learns from sharp faces too. Measured on the validation split with
``bench/smoothing_sweep.py`` (2,872 faces, one face 0.035 points), sigma 0 / 0.4 / 0.6 / 0.8 give m4 (the default
before s2, on the same recipe), 69.9 / 69.6 / 69.2 / 68.7%; m3 and m5 (m4's recipe on 40 px crops) gain at most 6
faces at 0.4 and lose up to 0.7 points at 0.6, and the default recipe's v5 stage 1 gave 65.9 / 65.8 / 64.6% at 0 /
0.4 / 0.6.

History: v3 and w3 trained on faces that rotation, zoom and shift augmentation all resampled bilinearly at
sub-pixel offsets, a low-pass the raw faces at inference never got; for them sigma 0.6 was best on validation
(+1.7 and +2.2 points over none), and it was the default from v3.1 to v3.2. Each file records its sigma in
``test_time_smoothing`` (``gaussian_3x3_sigma_0.6`` or ``none``), and ``--smoothing-sigma`` reproduces either.

``export.convert`` builds the graph's convolution from ``smoothing_kernel``; ``smooth`` is the same operation in
OpenCV, for sweeping sigma outside a graph and for checking the graph against.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

SMOOTHING_SIGMA = 0.0


def smoothing_kernel(sigma: float) -> NDArray[np.float32]:
    """3x3 Gaussian, normalised, as OpenCV defines it (at sigma 0.6 a wider kernel would add 1% more weight)."""
    column = cv2.getGaussianKernel(3, sigma, ktype=cv2.CV_32F)
    kernel: NDArray[np.float32] = column @ column.T
    return kernel


def smooth(faces: NDArray[np.float32], sigma: float) -> NDArray[np.float32]:
    """N x 48 x 48 x 1 float32 faces smoothed as the graph does: reflected borders (``BORDER_REFLECT_101``), no
    rounding; sigma 0 returns them unchanged."""
    if not sigma:
        return faces
    kernel = smoothing_kernel(sigma)
    return np.stack([cv2.filter2D(face[..., 0], -1, kernel) for face in faces])[..., np.newaxis]
