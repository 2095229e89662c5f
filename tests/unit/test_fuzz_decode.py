"""Property tests of bytes -> decode -> preprocess: whatever arrives, the path yields a valid image or a 4xx type.

``tests/unit/test_decode.py`` already throws random bytes and random byte overwrites/truncations at four small
images. This file aims where those rarely land:

* header edits: the exact fields our header parsers and the codecs read (JPEG segment lengths and SOF sizes,
  PNG IHDR with its CRC recomputed so libpng believes it, WebP RIFF/VP8/VP8L/VP8X sizes, BMP DIB fields),
  because a disagreement between ``read_header`` and the codec is how a decompression bomb slips past
  ``max_pixels``; hence the property "a decoded image never has more pixels than max_pixels";
* more seed layouts (progressive JPEG, grey/RGBA/16-bit PNG, lossless and alpha WebP, palette and 32-bit BMP),
  bit flips, splices of two formats, and a valid magic number followed by junk;
* random shapes, channel counts and dtypes through a real encoder: decode gives exactly H x W x 3 uint8
  (pixel-exact for the lossless formats), and preprocessing of any decoded image gives 48 x 48 uint8;
* the detector and ``align_face`` on images of any size, down to 1 x 1 and extreme aspect ratios.

Examples are bounded (a few hundred in all, no deadline, no example database) so the file runs in seconds.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from deepfer.engine.align import align_face, face_from_crop, to_batch
from deepfer.engine.decode import decode
from deepfer.engine.detect import FaceDetector
from deepfer.errors import DeepFERError
from deepfer.settings import Settings
from tests.imaging import encode, read

SMALL = cv2.resize(read("scenes/scene_0000.jpg"), (64, 48), interpolation=cv2.INTER_AREA)  # 48 x 64 x 3
GREY = cv2.cvtColor(SMALL, cv2.COLOR_BGR2GRAY)
# Room for the seeds (64 x 48) and for edits that grow them a little; larger claims must be refused.
MAX_PIXELS = 64 * 48 * 4
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

SEEDS: dict[str, bytes] = {
    "jpeg": encode(SMALL, ".jpg"),
    "jpeg progressive": cv2.imencode(".jpg", SMALL, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
    "jpeg grey": encode(GREY, ".jpg"),
    "png": encode(SMALL, ".png"),
    "png grey": encode(GREY, ".png"),
    "png rgba": encode(cv2.cvtColor(SMALL, cv2.COLOR_BGR2BGRA), ".png"),
    "png 16-bit": encode(SMALL.astype(np.uint16) * 257, ".png"),
    "webp": encode(SMALL, ".webp"),
    "webp lossless": cv2.imencode(".webp", SMALL, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes(),
    "webp alpha": encode(cv2.cvtColor(SMALL, cv2.COLOR_BGR2BGRA), ".webp"),
    "bmp": encode(SMALL, ".bmp"),
    "bmp 32-bit": encode(cv2.cvtColor(SMALL, cv2.COLOR_BGR2BGRA), ".bmp"),
    "bmp palette": encode(GREY, ".bmp"),
}
MAGIC = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b"BM"]

# (offset, size in bytes, byte order) of each header field worth lying about.
Field = tuple[int, int, str]


def jpeg_fields(data: bytes) -> list[Field]:
    """Every segment length before the scan, and the SOF's precision, height, width and component count."""
    fields: list[Field] = []
    offset = 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        fields.append((offset + 2, 2, "big"))
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            fields += [(offset + 4, 1, "big"), (offset + 5, 2, "big"), (offset + 7, 2, "big"), (offset + 9, 1, "big")]
        if marker == 0xDA:
            break
        offset += 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
    return fields


PNG_FIELDS: list[Field] = [
    (8, 4, "big"),
    (16, 4, "big"),
    (20, 4, "big"),
    *[(offset, 1, "big") for offset in range(24, 29)],
]
WEBP_FIELDS: list[Field] = [
    (4, 4, "little"),  # RIFF size
    (16, 4, "little"),  # first chunk size
    (20, 4, "little"),  # VP8X flags / VP8L signature and packed sizes / VP8 frame tag
    (24, 3, "little"),  # VP8X canvas width - 1
    (26, 2, "little"),  # VP8 width / VP8X canvas height - 1
    (28, 2, "little"),  # VP8 height
]
BMP_FIELDS: list[Field] = [
    (2, 4, "little"),  # file size
    (10, 4, "little"),  # pixel data offset
    (14, 4, "little"),  # DIB header size (selects the header layout)
    (18, 4, "little"),  # width (signed)
    (22, 4, "little"),  # height (signed; negative = top-down)
    (26, 2, "little"),  # planes
    (28, 2, "little"),  # bits per pixel
    (30, 4, "little"),  # compression
    (34, 4, "little"),  # image size
    (46, 4, "little"),  # palette colours used
]


def header_fields(name: str) -> list[Field]:
    kind = name.split(maxsplit=1)[0]
    return {"jpeg": jpeg_fields(SEEDS[name]), "png": PNG_FIELDS, "webp": WEBP_FIELDS, "bmp": BMP_FIELDS}[kind]


def fix_png_ihdr_crc(data: bytearray) -> None:
    """Recompute IHDR's CRC, so libpng acts on the edited fields instead of rejecting the chunk outright."""
    if len(data) >= 33 and data[12:16] == b"IHDR":
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))


def assert_image_or_4xx(data: bytes) -> NDArray[np.uint8] | None:
    """The property every input must satisfy; returns the image when there is one."""
    try:
        image = decode(data, max_pixels=MAX_PIXELS, max_pixel_scans=10**12)
    except DeepFERError as error:
        assert 400 <= error.status < 500, error
        assert error.message
        return None
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[2] == 3 and image.shape[0] >= 1 and image.shape[1] >= 1
    # The limit is checked on the header; if the codec saw a different size, a bomb could get past it.
    assert image.shape[0] * image.shape[1] <= MAX_PIXELS, image.shape
    return image


def assert_preprocesses(image: NDArray[np.uint8]) -> None:
    face = face_from_crop(image)
    assert face.shape == (48, 48) and face.dtype == np.uint8
    batch = to_batch([face])
    assert batch.shape == (1, 48, 48, 1) and batch.dtype == np.float32
    assert batch.min() >= 0 and batch.max() <= 255


@pytest.mark.parametrize("name", list(SEEDS))
def test_every_seed_decodes(name: str) -> None:
    """The seeds themselves are valid, so a refusal below is caused by the mutation, not by the seed."""
    image = assert_image_or_4xx(SEEDS[name])
    assert image is not None and image.shape == (48, 64, 3)


# A lie is most dangerous when it is almost the truth: a small change to the real value, an edge value, or noise.
EDIT = st.one_of(
    st.tuples(st.just("delta"), st.integers(-64, 64)),
    st.tuples(st.just("set"), st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 2**31, 2**32 - 1])),
    st.tuples(st.just("set"), st.integers(0, 2**32 - 1)),
)


def edited(data: bytes, fields: list[Field], edits: list[tuple[int, tuple[str, int]]]) -> bytearray:
    """``data`` with each picked field replaced (wrapping to the field's width)."""
    out = bytearray(data)
    for pick, (how, number) in edits:
        offset, size, order = fields[pick % len(fields)]
        old = int.from_bytes(out[offset : offset + size], order)  # type: ignore[arg-type]
        value = old + number if how == "delta" else number
        out[offset : offset + size] = (value % 256**size).to_bytes(size, order)  # type: ignore[arg-type]
    return out


@FUZZ
@given(
    name=st.sampled_from(sorted(SEEDS)),
    edits=st.lists(st.tuples(st.integers(0, 1000), EDIT), min_size=1, max_size=3),
    fix_crc=st.booleans(),
)
def test_header_edits_decode_or_raise_a_4xx(name: str, edits: list[tuple[int, tuple[str, int]]], fix_crc: bool) -> None:
    data = edited(SEEDS[name], header_fields(name), edits)
    if fix_crc:
        fix_png_ihdr_crc(data)
    image = assert_image_or_4xx(bytes(data))
    if image is not None:
        assert_preprocesses(image)


@FUZZ
@given(name=st.sampled_from(sorted(SEEDS)), flips=st.lists(st.integers(0, 8 * 4096), min_size=1, max_size=16))
def test_bit_flips_decode_or_raise_a_4xx(name: str, flips: list[int]) -> None:
    data = bytearray(SEEDS[name])
    for bit in flips:
        data[(bit // 8) % len(data)] ^= 1 << (bit % 8)
    image = assert_image_or_4xx(bytes(data))
    if image is not None:
        assert_preprocesses(image)


@FUZZ
@given(
    head=st.sampled_from(sorted(SEEDS)),
    tail=st.sampled_from(sorted(SEEDS)),
    cut=st.floats(0.0, 1.0),
    resume=st.floats(0.0, 1.0),
)
def test_splices_of_two_images_decode_or_raise_a_4xx(head: str, tail: str, cut: float, resume: float) -> None:
    """The start of one file and the rest of another: valid headers over someone else's data."""
    first, second = SEEDS[head], SEEDS[tail]
    assert_image_or_4xx(first[: int(cut * len(first))] + second[int(resume * len(second)) :])


@FUZZ
@given(magic=st.sampled_from(MAGIC), junk=st.binary(max_size=256))
def test_a_valid_magic_number_then_junk_is_a_4xx(magic: bytes, junk: bytes) -> None:
    """Past the sniffer and into the header parsers, which must not index or loop past the end."""
    assert_image_or_4xx(magic + junk)


# Formats and layouts a client can really produce; 16-bit samples only survive as such in PNG.
LAYOUTS: list[tuple[str, int, type[np.integer]]] = [
    *[(ext, channels, np.uint8) for ext in (".jpg", ".png", ".webp", ".bmp") for channels in (1, 3, 4)],
    *[(".png", channels, np.uint16) for channels in (1, 3, 4)],
]


def expected_bgr(array: NDArray[np.integer]) -> NDArray[np.uint8]:
    """What IMREAD_COLOR gives for a losslessly stored array: grey replicated, alpha dropped, 16 bits >> 8."""
    image = (array >> 8).astype(np.uint8) if array.dtype == np.uint16 else array.astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[..., np.newaxis], 3, axis=2)
    return image[..., :3]


@FUZZ
@given(
    layout=st.sampled_from(LAYOUTS),
    height=st.integers(1, 120),
    width=st.integers(1, 120),
    seed=st.integers(0, 2**32 - 1),
    flat=st.booleans(),
)
def test_any_shape_and_dtype_decodes_to_hxwx3_uint8_and_preprocesses_to_48x48(
    layout: tuple[str, int, type[np.integer]], height: int, width: int, seed: int, flat: bool
) -> None:
    extension, channels, dtype = layout
    shape = (height, width) if channels == 1 else (height, width, channels)
    rng = np.random.default_rng(seed)
    top = int(np.iinfo(dtype).max)
    # Flat images compress to almost nothing, noise to nearly raw size: both ends of the codecs' paths.
    array = np.full(shape, rng.integers(0, top + 1), dtype) if flat else rng.integers(0, top + 1, shape, dtype)
    image = decode(encode(array, extension), max_pixels=MAX_PIXELS * 4, max_pixel_scans=10**12)
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    if extension == ".png" or (extension == ".bmp" and channels != 1):
        np.testing.assert_array_equal(image, expected_bgr(array))
    assert_preprocesses(image)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    settings_ = Settings()
    return FaceDetector(
        settings_.detector_path,
        score_threshold=settings_.detection_score_threshold,
        nms_threshold=settings_.detection_nms_threshold,
        max_side_px=settings_.detection_max_side_px,
    )


Box = tuple[float, float, float, float]


def boxes_in(width: int, height: int) -> st.SearchStrategy[tuple[Box, NDArray[np.float32]]]:
    """A box and five landmarks anywhere from well outside the image to inside it, any size up to the image's."""
    span = max(width, height)
    coordinate = st.floats(-span, 2 * span, allow_nan=False)
    size = st.floats(0.0, 2 * span, allow_nan=False)
    points = st.lists(st.tuples(coordinate, coordinate), min_size=5, max_size=5)
    return st.tuples(st.tuples(coordinate, coordinate, size, size), points.map(lambda p: np.array(p, np.float32)))


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    height=st.one_of(st.integers(1, 64), st.integers(600, 1500)),
    width=st.one_of(st.integers(1, 64), st.integers(600, 1500)),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_detect_and_align_accept_any_image_size(
    detector: FaceDetector, height: int, width: int, seed: int, data: st.DataObject
) -> None:
    """Tiny, huge and 1 x N images through the detector; any box it (or a caller) gives aligns to 48 x 48."""
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    found = detector.detect(image)
    crops: list[Callable[[], NDArray[np.uint8]]] = [
        lambda detection=detection: align_face(image, detection.box, detection.landmarks) for detection in found
    ]
    box, landmarks = data.draw(boxes_in(width, height))
    crops.append(lambda: align_face(image, box, landmarks))
    for crop in crops:
        face = crop()
        assert face.shape == (48, 48) and face.dtype == np.uint8
