"""Encoded bytes -> HxWx3 uint8 BGR, refusing what is not a supported image before spending memory on it.

The format is recognised from its magic bytes (never from a file name or a client's content type), and the
pixel count is read from the header, so a decompression bomb (a few KB that expand to gigapixels) is refused
before ``cv2.imdecode`` allocates anything.

Decoding is ``cv2.imdecode(..., IMREAD_COLOR)``, exactly what ``training.data.decode_face`` does, so a face sent
with ``detect=false`` becomes the same array the model was trained on. That flag also gives us, for free:
EXIF orientation applied (JPEG), grey and palette images expanded to 3 channels, alpha dropped, and 16-bit
samples scaled to 8-bit.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np
from numpy.typing import NDArray

from service.errors import BadImage, TooManyPixels, UnsupportedFormat


class ImageFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    BMP = "bmp"


# Formats we recognise but do not serve: 415 tells the caller to convert, where 400 would say "broken file".
_UNSUPPORTED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
)
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}

# JPEG start-of-frame markers carry the dimensions; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Markers with no length field: TEM and RST0-7 (SOI and EOI are handled where they occur).
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}


@dataclass(frozen=True)
class Header:
    format: ImageFormat
    width: int
    height: int


def sniff_format(data: bytes) -> ImageFormat:
    """The supported format of ``data`` from its magic bytes; 415 for a known other format, 400 otherwise."""
    if data.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageFormat.WEBP
    if data.startswith(b"BM"):
        return ImageFormat.BMP
    for magic, name in _UNSUPPORTED_MAGIC:
        if data.startswith(magic):
            raise UnsupportedFormat(f"{name} images are not supported; send JPEG, PNG, WebP or BMP")
    if data[4:8] == b"ftyp" and data[8:12] in _FTYP_BRANDS:
        raise UnsupportedFormat(f"{_FTYP_BRANDS[data[8:12]]} images are not supported; send JPEG, PNG, WebP or BMP")
    raise BadImage("not an image: expected JPEG, PNG, WebP or BMP data")


def read_header(data: bytes) -> Header:
    """Format and dimensions without decoding pixels; a header too short or inconsistent is a 400."""
    image_format = sniff_format(data)
    try:
        width, height = _DIMENSIONS[image_format](data)
    except (struct.error, IndexError, ValueError):
        raise BadImage(f"truncated or corrupt {image_format.name} header") from None
    if width <= 0 or height <= 0:
        raise BadImage(f"{image_format.name} header gives an empty image ({width}x{height})")
    return Header(image_format, width, height)


def decode(data: bytes, *, max_pixels: int) -> NDArray[np.uint8]:
    """Image bytes -> HxWx3 uint8 BGR, orientation applied; raises BadImage, UnsupportedFormat, TooManyPixels."""
    if not data:
        raise BadImage("empty image")
    header = read_header(data)
    if header.width * header.height > max_pixels:
        raise TooManyPixels(
            f"{header.width}x{header.height} = {header.width * header.height} pixels exceeds max_pixels={max_pixels}"
        )
    if header.format is ImageFormat.JPEG and data.rfind(b"\xff\xd9") < 4:
        # libjpeg pads a truncated stream with grey and only warns; without an end-of-image marker we refuse it.
        raise BadImage("truncated JPEG: no end-of-image marker")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadImage(f"corrupt or truncated {header.format.name} data")
    return image


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walk the marker segments to the first start-of-frame; pixels are never touched."""
    offset = 2
    while True:
        while data[offset] != 0xFF:  # tolerate junk between segments, as libjpeg does
            offset += 1
        while data[offset] == 0xFF:  # fill bytes
            offset += 1
        marker = data[offset]
        offset += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            raise ValueError("no frame header before image data")
        (length,) = struct.unpack(">H", data[offset : offset + 2])
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[offset + 3 : offset + 7])
            return width, height
        if length < 2:
            raise ValueError("bad segment length")
        offset += length


def _png_size(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise ValueError("first chunk is not IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the 3-byte frame tag and start code
        if data[23:26] != b"\x9d\x01\x2a":
            raise ValueError("bad VP8 start code")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: 14-bit (size - 1) fields packed after the 0x2f signature
        if data[20] != 0x2F:
            raise ValueError("bad VP8L signature")
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit (size - 1) canvas fields
        if len(data) < 30:
            raise ValueError("short VP8X chunk")
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise ValueError(f"unknown WebP chunk {chunk!r}")


def _bmp_size(data: bytes) -> tuple[int, int]:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
        return width, height
    width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)  # a negative height means top-down rows, not an empty image


_DIMENSIONS = {
    ImageFormat.JPEG: _jpeg_size,
    ImageFormat.PNG: _png_size,
    ImageFormat.WEBP: _webp_size,
    ImageFormat.BMP: _bmp_size,
}
