"""decode: formats from magic bytes, dimensions from headers, and nothing but DeepFERError on any input."""

from __future__ import annotations

import time
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from deepfer.engine.decode import Header, ImageFormat, decode, read_header
from deepfer.errors import BadImage, DeepFERError, TooManyPixels, TooMuchImageData, UnsupportedFormat
from tests.hostile_inputs import png, png_idat_bomb
from tests.imaging import encode, read, with_exif_orientation

SCENE = read("scenes/scene_0000.jpg")  # 480 x 640 x 3
ENCODED = {
    ImageFormat.JPEG: encode(SCENE, ".jpg"),
    ImageFormat.PNG: encode(SCENE, ".png"),
    ImageFormat.WEBP: encode(SCENE, ".webp"),
    ImageFormat.BMP: encode(SCENE, ".bmp"),
}


@pytest.mark.parametrize("image_format", list(ImageFormat))
def test_header_gives_format_and_size_without_decoding(image_format: ImageFormat) -> None:
    assert read_header(ENCODED[image_format]) == Header(image_format, 640, 480)


def test_webp_lossless_and_extended_headers() -> None:
    lossless = cv2.imencode(".webp", SCENE, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    assert read_header(lossless) == Header(ImageFormat.WEBP, 640, 480)
    with_alpha = encode(cv2.cvtColor(SCENE, cv2.COLOR_BGR2BGRA), ".webp")
    assert read_header(with_alpha) == Header(ImageFormat.WEBP, 640, 480)


@pytest.mark.parametrize("image_format", list(ImageFormat))
def test_decode_is_what_training_decodes(image_format: ImageFormat) -> None:
    data = ENCODED[image_format]
    expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decode(data, max_pixels=10**7, max_pixel_scans=10**12), expected)


def test_pixel_limit_comes_from_the_header() -> None:
    with pytest.raises(TooManyPixels):
        decode(ENCODED[ImageFormat.PNG], max_pixels=640 * 480 - 1, max_pixel_scans=10**12)
    assert decode(ENCODED[ImageFormat.PNG], max_pixels=640 * 480, max_pixel_scans=10**12).shape == (480, 640, 3)


def test_exif_orientation_is_applied() -> None:
    rotated = with_exif_orientation(encode(cv2.rotate(SCENE, cv2.ROTATE_90_CLOCKWISE), ".jpg"), 8)
    assert decode(rotated, max_pixels=10**7, max_pixel_scans=10**12).shape == (480, 640, 3)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", BadImage),
        (b"plain text", BadImage),
        (b"GIF89a" + bytes(20), UnsupportedFormat),
        (b"\x00\x00\x00\x1cftypheic" + bytes(20), UnsupportedFormat),
        (ENCODED[ImageFormat.JPEG][:300], BadImage),
        (ENCODED[ImageFormat.BMP][:30], BadImage),
    ],
)
def test_refusals(data: bytes, error: type[DeepFERError]) -> None:
    with pytest.raises(error):
        decode(data, max_pixels=10**7, max_pixel_scans=10**12)


# Adam7's passes as the PNG specification draws them: the pass of each pixel of an 8 x 8 tile.
ADAM7_TILE = np.array(
    [[1, 6, 4, 6, 2, 6, 4, 6], [7] * 8, [5, 6, 5, 6, 5, 6, 5, 6], [7] * 8, [3, 6, 4, 6, 3, 6, 4, 6], [7] * 8,
     [5, 6, 5, 6, 5, 6, 5, 6], [7] * 8]
)  # fmt: skip


def scanlines(image: NDArray[np.generic], depth: int) -> bytes:
    """Rows of ``image`` (H x W x C, or H x W) as PNG scanlines: filter byte 0, then big-endian samples packed."""
    rows = np.ascontiguousarray(image).reshape(image.shape[0], -1)
    if depth == 1:
        packed = np.packbits(rows.astype(np.uint8), axis=1)
    else:
        packed = rows.astype(">u2" if depth == 16 else np.uint8).view(np.uint8).reshape(rows.shape[0], -1)
    return np.hstack([np.zeros((len(packed), 1), np.uint8), packed]).tobytes()


def interlaced_scanlines(image: NDArray[np.generic], depth: int) -> bytes:
    """The seven Adam7 sub-images' scanlines, each pass picked by the specification's tile, not by a formula."""
    height, width = image.shape[:2]
    passes = np.tile(ADAM7_TILE, (-(-height // 8), -(-width // 8)))[:height, :width]
    out = b""
    for number in range(1, 8):
        rows, columns = np.nonzero(passes == number)
        if len(rows):
            sub = image[np.unique(rows)][:, np.unique(columns)]
            out += scanlines(sub, depth)
    return out


# (colour type, depth, channels) of each PNG layout; sub-byte depths share the 1-bit packing rule.
PNG_LAYOUTS = [(0, 1, 1), (0, 8, 1), (0, 16, 1), (2, 8, 3), (2, 16, 3), (4, 8, 2), (6, 8, 4), (6, 16, 4)]


@pytest.mark.parametrize("interlace", [0, 1])
@pytest.mark.parametrize("layout", PNG_LAYOUTS)
@pytest.mark.parametrize("size", [(1, 1), (3, 2), (13, 9), (37, 53)])
def test_png_data_may_fill_its_header_and_not_one_byte_more(
    layout: tuple[int, int, int], interlace: int, size: tuple[int, int]
) -> None:
    """The exact scanlines decode to the image (so the file is right), and the same file with one more byte
    inflated is refused: the bound is the header's size, whatever the layout."""
    (colour, depth, channels), (width, height) = layout, size
    top = 1 if depth == 1 else 255 if depth == 8 else 65535
    image = np.random.default_rng(width * height).integers(0, top + 1, (height, width, channels))
    image = image[..., 0] if channels == 1 else image
    data = interlaced_scanlines(image, depth) if interlace else scanlines(image, depth)
    exact = png(width, height, zlib.compress(data), colour=colour, depth=depth, interlace=interlace)
    decoded = cv2.imdecode(np.frombuffer(exact, np.uint8), cv2.IMREAD_UNCHANGED)
    if channels in (1, 3) and depth >= 8:  # OpenCV keeps these layouts as they are (BGR for colour)
        expected = image if channels == 1 else image[..., ::-1]
        np.testing.assert_array_equal(decoded, expected)
    assert decode(exact, max_pixels=10**6, max_pixel_scans=10**12).shape == (height, width, 3)
    one_more = png(width, height, zlib.compress(data + b"\x00"), colour=colour, depth=depth, interlace=interlace)
    with pytest.raises(TooMuchImageData):
        decode(one_more, max_pixels=10**6, max_pixel_scans=10**12)


def test_a_png_inflating_to_a_gigabyte_is_refused_at_once() -> None:
    """1 MB on disk, a 64x64 header, 1 GiB of image data: libpng inflated all of it (3 s here, a 3 GB one kept a
    thread 10+ s); the check inflates 12 KB."""
    bomb = png_idat_bomb(64, 64, inflated_mib=1024)
    started = time.monotonic()
    with pytest.raises(TooMuchImageData, match="64x64"):
        decode(bomb, max_pixels=10**7, max_pixel_scans=10**12)
    assert time.monotonic() - started < 0.5


NOT_SERVED = {
    "pgm": encode(SCENE[..., 0], ".pgm"),
    "ppm": encode(SCENE, ".ppm"),
    "pbm": encode(SCENE[..., 0], ".pbm"),
    "pam": encode(SCENE, ".pam"),
    "pfm": encode(SCENE.astype(np.float32), ".pfm"),
    "hdr": encode(SCENE.astype(np.float32), ".hdr"),
    "sun raster": encode(SCENE, ".ras"),
    "tiff": encode(SCENE, ".tif"),
    "gif": encode(SCENE, ".gif"),
    "jpeg 2000": encode(SCENE, ".jp2"),
    "jpeg 2000 codestream": b"\xff\x4f\xff\x51" + bytes(60),
    "openexr": b"\x76\x2f\x31\x01" + bytes(60),  # this OpenCV has no EXR encoder; its magic is what matters
}


@pytest.mark.parametrize("name", list(NOT_SERVED))
def test_formats_the_service_does_not_need_never_reach_a_decoder(name: str) -> None:
    """Each is a decoder OpenCV has (PNM and HDR from real encoder output here); 415 says "convert", not "broken"."""
    with pytest.raises(UnsupportedFormat):
        decode(NOT_SERVED[name], max_pixels=10**7, max_pixel_scans=10**12)


SMALL = {
    name: encode(cv2.resize(SCENE, (64, 48)), extension)
    for name, extension in [("jpeg", ".jpg"), ("png", ".png"), ("webp", ".webp"), ("bmp", ".bmp")]
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SMALL)),
    cuts=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8),
    truncate=st.integers(0, 4000),
)
def test_mutated_images_decode_or_raise_a_deepfer_error(name: str, cuts: list[tuple[int, int]], truncate: int) -> None:
    """Flipped bytes and truncation anywhere: an image or a 4xx, never another exception or a hang."""
    data = bytearray(SMALL[name])
    for position, value in cuts:
        if position < len(data):
            data[position] = value
    data = data[: max(1, len(data) - truncate)] if truncate % 3 == 0 else data
    try:
        image = decode(bytes(data), max_pixels=10**6, max_pixel_scans=10**12)
    except DeepFERError as error:
        assert 400 <= error.status < 500
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        decode(data, max_pixels=10**6, max_pixel_scans=10**12)
    except DeepFERError as error:
        assert 400 <= error.status < 500
