"""decode: formats from magic bytes, dimensions from headers, and nothing but DeepFERError on any input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepfer.decode import Header, ImageFormat, decode, read_header
from deepfer.errors import BadImage, DeepFERError, TooManyPixels, UnsupportedFormat
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
