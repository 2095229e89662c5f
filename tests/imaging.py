"""Small helpers that build test inputs from the committed real images: other formats, EXIF, odd layouts."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

DATA = Path(__file__).resolve().parent / "data"


def read(name: str) -> NDArray[np.uint8]:
    image = cv2.imread(str(DATA / name), cv2.IMREAD_UNCHANGED)
    assert image is not None, name
    return image


def encode(image: NDArray[np.generic], extension: str) -> bytes:
    ok, buffer = cv2.imencode(extension, image)
    assert ok, extension
    return buffer.tobytes()


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an APP1 EXIF segment holding only the Orientation tag (0x0112), right after SOI."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]
