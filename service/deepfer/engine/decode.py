"""Encoded bytes -> HxWx3 uint8 BGR, refusing what is not a supported image before spending memory on it.

The format is recognised from its magic bytes (never from a file name or a client's content type), and the
pixel count is read from the header, so a decompression bomb (a few KB that expand to gigapixels) is refused
before ``cv2.imdecode`` allocates anything. The readers follow the decoders' own rules (which JPEG frame header
libjpeg uses, which chunk libpng and libwebp take the size from), because a reader that finds another size than
the decoder is a bypass; ``tests/unit/test_header_agreement.py`` fuzzes exactly that. A JPEG's scans are counted too:
a progressive JPEG costs one pass over every block per scan, so a small file can be a CPU bomb.

The header only bounds the work when the decoder stops where the header says. libpng does not: it inflates every
IDAT byte, warning "Too much image data" once the rows are full, so a 1 MB PNG that claims 64x64 inflated 1 GB in
3 s (a 9 MB one held a thread 34 s). So a PNG's image data is inflated here first, at most the bytes its IHDR
implies plus one, and a stream with more is refused. The other decoders stop at the header's size: libjpeg (given
the scan limits), libwebp (a still frame, or an animation's first frame, on the canvas) and OpenCV's BMP reader
(rows x row bytes, RLE codes bounded by the pixels). Every other format OpenCV could decode is refused by its magic
bytes before it reaches a decoder, so what ``cv2.imdecode`` receives is one of these four.

Decoding is ``cv2.imdecode(..., IMREAD_COLOR)``, exactly what ``training.data.decode_face`` does, so a face sent
with ``detect=false`` becomes the same array the model was trained on. That flag also gives us, for free:
EXIF orientation applied (JPEG), grey and palette images expanded to 3 channels, alpha dropped, and 16-bit
samples scaled to 8-bit.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np
from numpy.typing import NDArray

from deepfer.engine.pixels import as_uint8
from deepfer.errors import BadImage, TooManyPixels, TooManyScans, TooMuchImageData, UnsupportedFormat


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
    (b"\xff\x4f\xff\x51", "JPEG 2000"),  # a bare codestream
    # The rest of what OpenCV decodes: a "P" magic for PBM/PGM/PPM/PAM and PFM, then Radiance HDR, Sun raster and
    # OpenEXR. None carries a face photo in practice, and each is one more decoder an attacker could aim at.
    *((f"P{kind}".encode(), "PNM") for kind in range(1, 8)),
    (b"PF", "PFM"),
    (b"Pf", "PFM"),
    (b"#?RADIANCE", "Radiance HDR"),
    (b"#?RGBE", "Radiance HDR"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
)
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}

# JPEG markers as libjpeg-turbo 3 reads them (jdmarker.c). Frame headers it decodes: baseline, extended,
# progressive and lossless, Huffman or arithmetic; the other SOF codes (hierarchical) it refuses, and so do we.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCA, 0xCB}
# No length field: TEM and RST0-7 (restart markers also sit inside scan data).
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# Segments libjpeg reads by their length: DHT, DAC, DQT, DNL, DRI, APP0-15, JPG0-13 and COM.
_JPEG_SEGMENTS = {0xC4, 0xCC, 0xDB, 0xDC, 0xDD, *range(0xE0, 0xFE), 0xFE}
# A marker, as both libjpeg's marker reader and its entropy decoders find one: FF, any FF fill bytes, then a byte
# that is not 00. "FF 00" is a stuffed data byte and is skipped like any other byte between segments. Written
# "FF FF*" rather than "FF+": the same language, but a literal first byte lets the regex engine skip to each FF
# in a tight loop. "FF+" tested every byte of the scan data as a candidate: 183 against 15 us per public scene, with
# the GIL held, on the serving threads (docs/performance.md).
_JPEG_MARKER = re.compile(rb"\xff\xff*([^\x00\xff])")
# The most scans a JPEG may have. Real encoders write few: libjpeg's progressive script has 10 scans for colour
# and 6 for grey, mozjpeg's optimised ones about as many, a baseline file 1 (3 if not interleaved); the JPEG
# standard itself has no limit, which is the "progressive JPEG" CPU bomb (libjpeg-turbo's "Two Issues with the
# JPEG Standard"): every scan revisits every block. libjpeg-turbo leaves the limit to the application
# (TurboJPEG's TJPARAM_SCANLIMIT, no limit by default) and its own fuzz targets use 500 on images of at most
# 1 Mpx; we decode up to max_pixels (40 Mpx), so 100: ten times any encoder's output.
MAX_JPEG_SCANS = 100
# Bytes per pixel x 8 of each PNG colour type (grey, RGB, palette, grey + alpha, RGBA) at one bit of depth.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7's passes: first column, first row, column step, row step.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
# A PNG's chunks are walked in Python, so their number bounds that walk: 10,000 is a 10 MB file in 1 KB chunks,
# where encoders write 8 KB (libpng's default) or more; 800,000 empty chunks fit in 10 MB.
MAX_PNG_CHUNKS = 10_000
# Inflate in steps: the compressed data 64 KB at a time, at most 1 MB of output held at once.
_INFLATE_IN_BYTES = 64 * 1024
_INFLATE_OUT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Header:
    format: ImageFormat
    width: int
    height: int
    scans: int = 1  # passes of the decoder over every block: a progressive JPEG's scan count, 1 otherwise

    @property
    def pixels(self) -> int:
        return self.width * self.height


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
        if image_format is ImageFormat.JPEG:
            width, height, scans = _jpeg_header(data)
        else:
            (width, height), scans = _DIMENSIONS[image_format](data), 1
    except (struct.error, IndexError, ValueError) as error:
        raise BadImage(f"truncated or corrupt {image_format.name} data: {error}") from None
    if width <= 0 or height <= 0:
        raise BadImage(f"{image_format.name} header gives an empty image ({width}x{height})")
    return Header(image_format, width, height, scans)


def decode(data: bytes, *, max_pixels: int, max_pixel_scans: int) -> NDArray[np.uint8]:
    """Image bytes -> HxWx3 uint8 BGR, orientation applied; raises BadImage, UnsupportedFormat, TooManyPixels,
    TooManyScans. ``max_pixel_scans`` bounds decode work (pixels x scans), ``max_pixels`` the memory."""
    if not data:
        raise BadImage("empty image")
    header = read_header(data)
    if header.pixels > max_pixels:
        raise TooManyPixels(
            f"{header.width}x{header.height} = {header.pixels} pixels exceeds max_pixels={max_pixels} "
            "(DEEPFER_MAX_PIXELS)"
        )
    if header.scans > MAX_JPEG_SCANS:
        raise TooManyScans(f"JPEG with {header.scans} scans; no encoder writes more than {MAX_JPEG_SCANS}")
    if header.pixels * header.scans > max_pixel_scans:
        raise TooManyScans(
            f"{header.pixels} pixels x {header.scans} scans exceeds max_pixel_scans={max_pixel_scans} "
            "(DEEPFER_MAX_PIXEL_SCANS)"
        )
    if header.format is ImageFormat.PNG:
        _check_png_data(data, header)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadImage(f"corrupt or truncated {header.format.name} data")
    return as_uint8(image)


def _jpeg_header(data: bytes) -> tuple[int, int, int]:
    """(width, height, scans), walking the markers exactly as libjpeg does, so the frame we report is the frame it
    decodes: SOI first, then markers found as libjpeg finds them (fill bytes and stuffed zeros skipped), segments
    skipped by their length (libjpeg reads a length under 2 as 2), scan data skipped to its next marker, up to EOI.
    What libjpeg refuses (a second SOI or SOF, a scan before the frame, an unknown marker) is refused here too.
    A stream without EOI is refused: libjpeg would pad it with grey and only warn."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("no start-of-image marker")
    offset, frame, scans = 2, None, 0
    while True:
        found = _JPEG_MARKER.search(data, offset)
        if found is None:
            raise ValueError("truncated: no end-of-image marker")
        marker, offset = found[1][0], found.end()
        if marker in _JPEG_STANDALONE:
            continue
        if marker == 0xD9:
            break
        (length,) = struct.unpack(">H", data[offset : offset + 2])
        if marker in _JPEG_SOF:
            if frame is not None:
                raise ValueError("second frame header")
            frame = struct.unpack(">HH", data[offset + 3 : offset + 7])  # height, width
        elif marker == 0xDA:
            if frame is None:
                raise ValueError("scan before the frame header")
            scans += 1
        elif marker not in _JPEG_SEGMENTS:
            raise ValueError(f"marker 0x{marker:02x} is not decodable")
        offset += max(length, 2)
    if frame is None or scans == 0:
        raise ValueError("no frame or no scan before end of image")
    height, width = frame
    return width, height, scans


def _png_size(data: bytes) -> tuple[int, int]:
    """libpng takes the size from IHDR, which must be the first chunk and 13 bytes long (else it refuses)."""
    if data[12:16] != b"IHDR" or data[8:12] != b"\x00\x00\x00\x0d":
        raise ValueError("first chunk is not a 13-byte IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _check_png_data(data: bytes, header: Header) -> None:
    """Refuse a PNG whose IDAT stream inflates to more than its IHDR's rows hold; see the module docstring.

    Costs one inflate of the image data, bounded by that size (about 0.1 s for 100 MB on this machine's core);
    zlib releases the GIL while it inflates. A stream zlib cannot inflate is left to libpng, which stops there.
    """
    expected = _png_data_bytes(data, header.width, header.height)
    inflater = zlib.decompressobj()
    produced = 0
    try:
        for payload in _png_chunks(data, b"IDAT"):
            for start in range(0, len(payload), _INFLATE_IN_BYTES):
                pending: bytes | memoryview = payload[start : start + _INFLATE_IN_BYTES]
                while pending and not inflater.eof:
                    produced += len(inflater.decompress(pending, min(_INFLATE_OUT_BYTES, expected + 1 - produced)))
                    if produced > expected:
                        raise TooMuchImageData(
                            f"PNG image data inflates past the {expected} bytes its {header.width}x{header.height} "
                            "header holds (a decompression bomb)"
                        )
                    pending = inflater.unconsumed_tail
    except zlib.error:
        return


def _png_data_bytes(data: bytes, width: int, height: int) -> int:
    """Bytes of filtered scanlines (a filter byte, then the packed samples) the IHDR promises, Adam7 passes
    included, as libpng computes them."""
    if len(data) < 33:
        raise BadImage("truncated PNG header")
    depth, colour, interlace = data[24], data[25], data[28]
    if colour not in _PNG_CHANNELS:
        raise BadImage(f"PNG colour type {colour} does not exist")
    bits = _PNG_CHANNELS[colour] * depth

    def rows_bytes(columns: int, rows: int) -> int:
        return rows * (1 + (columns * bits + 7) // 8) if columns and rows else 0

    if not interlace:
        return rows_bytes(width, height)
    return sum(rows_bytes(max(0, -(-(width - x) // dx)), max(0, -(-(height - y) // dy))) for x, y, dx, dy in _ADAM7)


def _png_chunks(data: bytes, kind: bytes) -> Iterator[memoryview]:
    """The payloads of ``kind`` chunks up to IEND (without copying); more than MAX_PNG_CHUNKS chunks is a 400."""
    view, offset = memoryview(data), 8
    for _ in range(MAX_PNG_CHUNKS):
        if offset + 8 > len(data):
            return
        length, chunk = struct.unpack_from(">I4s", data, offset)
        if chunk == kind:
            yield view[offset + 8 : offset + 8 + length]
        if chunk == b"IEND":
            return
        offset += 12 + length
    raise BadImage(f"PNG with more than {MAX_PNG_CHUNKS} chunks")


def _webp_size(data: bytes) -> tuple[int, int]:
    """The first chunk decides, as in libwebp: a simple file's VP8/VP8L frame, or an extended file's VP8X canvas
    (libwebp refuses a still image whose frame differs from the canvas; an animation is composed on the canvas)."""
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
    """As OpenCV's own BMP reader: an OS/2 core header (12 bytes, 16-bit sizes) or a Windows header of 36 bytes or
    more (32-bit signed sizes); it refuses the sizes in between."""
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
        return width, height
    if header_size < 36:
        raise ValueError(f"BMP header of {header_size} bytes")
    width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)  # a negative height means top-down rows, not an empty image


_DIMENSIONS = {
    ImageFormat.PNG: _png_size,
    ImageFormat.WEBP: _webp_size,
    ImageFormat.BMP: _bmp_size,
}
