"""Image arrays as the stages hand them on: H x W (x C) uint8."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def as_uint8(image: object) -> NDArray[np.uint8]:
    """An OpenCV result typed as what it is: OpenCV keeps a uint8 input's dtype, its stubs say any number type.

    No copy is made; anything but uint8 is a bug upstream, so it is refused, not converted.
    """
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels from OpenCV, got {array.dtype}")
    return array
