"""The header readers against the decoder: for every input OpenCV decodes, ``read_header`` reports exactly the size
it decodes, so ``max_pixels`` and ``max_pixel_scans`` are checked on the image that will really be allocated.

Hypothesis builds hostile structures around small real files (claimed sizes stay under 64 x 64 so each example
decodes in microseconds): for JPEG, stuffed zeros, fill bytes, junk, standalone markers, fake frame headers
inside comments, second frame headers, segment lengths under 2, unknown markers and truncation; for PNG, chunks
before IHDR, odd IHDR lengths and second IHDRs; for WebP, VP8X canvases that disagree with the frame and reordered
chunks; for BMP, every header size and negative heights. The readers may refuse more than the decoder does (a JPEG
without end-of-image marker, say) but never report another size. ``tests/http/test_hostile.py`` sends the full-size
bombs to a real server.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepfer.engine.decode import read_header
from deepfer.errors import DeepFERError
from tests.hostile_inputs import jpeg, png_chunk, segment, sof0

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SIDE = st.integers(1, 64)


def agrees(data: bytes) -> bool:
    """The property; True when the decoder accepted the input (so a test can see that some examples did)."""
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        return False
    try:
        header = read_header(data)
    except DeepFERError:
        return True  # refusing more than the decoder is safe
    # EXIF orientation may swap the sides; the pixel count, which the limits are about, never changes.
    assert sorted(decoded.shape[:2]) == sorted((header.height, header.width)), (header, decoded.shape)
    return True


JPEG_SEEDS = [jpeg(), jpeg(progressive=True), jpeg(grey=True), jpeg((40, 8))]


def jpeg_pieces() -> st.SearchStrategy[bytes]:
    marker = st.integers(0, 255)
    return st.one_of(
        st.builds(lambda n: b"\xff\x00" + bytes([n, 6]), st.integers(0, 255)),  # stuffed zero, then "a length"
        # A stuffed zero whose "length" lands on a fake frame header hidden in the comment that follows.
        st.builds(
            lambda n, w, h: b"\xff\x00\x00" + bytes([n]) + segment(0xFE, sof0(w, h)), st.integers(2, 8), SIDE, SIDE
        ),
        st.builds(lambda k: b"\xff" * k, st.integers(1, 4)),  # fill bytes
        st.binary(min_size=1, max_size=6).filter(lambda b: b"\xff" not in b),  # junk between segments
        st.builds(lambda m: bytes([0xFF, m]), st.sampled_from([0x01, *range(0xD0, 0xD8)])),  # standalone
        st.builds(lambda w, h, m: segment(m, sof0(w, h)), SIDE, SIDE, st.sampled_from([0xFE, 0xE0, 0xE1, 0xEF])),
        st.builds(sof0, SIDE, SIDE),  # a second frame header
        st.builds(lambda m, n: bytes([0xFF, m, 0, n]), marker, st.integers(0, 1)),  # length under 2
        st.builds(segment, marker, st.binary(max_size=12)),  # any marker with a payload
    )


@FUZZ
@given(
    seed=st.sampled_from(JPEG_SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 10), jpeg_pieces()), max_size=4),
    claimed=st.none() | st.tuples(SIDE, SIDE),
    cut=st.integers(0, 40),
)
def test_jpeg_reader_reports_what_libjpeg_decodes(
    seed: bytes, edits: list[tuple[int, bytes]], claimed: tuple[int, int] | None, cut: int
) -> None:
    data = seed
    if claimed is not None:  # the real frame lies about its size too
        at = data.index(b"\xff\xc0") if b"\xff\xc0" in data else data.index(b"\xff\xc2")
        data = data[: at + 5] + struct.pack(">HH", claimed[1], claimed[0]) + data[at + 9 :]
    boundaries = _segment_starts(data)
    for where, piece in sorted(edits, key=lambda edit: -(edit[0] % len(boundaries))):  # last boundary first
        at = boundaries[where % len(boundaries)]  # at segment boundaries, where the header walk runs
        data = data[:at] + piece + data[at:]
    agrees(data[: len(data) - cut] if cut % 4 == 0 else data)


def _segment_starts(data: bytes) -> list[int]:
    """Offsets of the marker segments before the first scan (SOI's end included)."""
    starts, offset = [2], 2
    while data[offset + 1] != 0xDA:
        offset += 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
        starts.append(offset)
    return starts


PNG = cv2.imencode(".png", np.full((24, 16, 3), 90, np.uint8))[1].tobytes()


def ihdr(width: int, height: int, length: int = 13) -> bytes:
    payload = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = png_chunk(b"IHDR", payload)
    return struct.pack(">I", length) + chunk[4:]


@FUZZ
@given(
    before=st.lists(st.sampled_from([b"tEXt", b"gAMA", b"IHDR", b"zzZz", b"IDAT"]), max_size=2),
    first=st.tuples(SIDE, SIDE, st.sampled_from([13, 13, 12, 14])),
    second=st.none() | st.tuples(SIDE, SIDE),
)
def test_png_reader_reports_what_libpng_decodes(
    before: list[bytes], first: tuple[int, int, int], second: tuple[int, int] | None
) -> None:
    rest = PNG[8 + 25 :]  # everything after the real IHDR
    chunks = b"".join(png_chunk(kind, sof0(8, 8)) for kind in before)
    extra = ihdr(*second) if second else b""
    agrees(b"\x89PNG\r\n\x1a\n" + chunks + ihdr(*first) + extra + rest)


WEBP_LOSSY = cv2.imencode(".webp", np.full((24, 16, 3), 90, np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 80])[1].tobytes()
WEBP_LOSSLESS = cv2.imencode(".webp", np.full((24, 16, 3), 90, np.uint8), [cv2.IMWRITE_WEBP_QUALITY, 101])[1]


def riff(chunks: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", len(chunks) + 4) + b"WEBP" + chunks


@FUZZ
@given(
    lossless=st.booleans(),
    canvas=st.none() | st.tuples(SIDE, SIDE, st.sampled_from([0, 0x10, 0x02])),  # flags: none, alpha, animation
    leading=st.lists(st.sampled_from([b"ALPH", b"ICCP", b"EXIF", b"zzzz"]), max_size=2),
    frame=st.none() | st.tuples(SIDE, SIDE),
)
def test_webp_reader_reports_what_libwebp_decodes(
    lossless: bool,
    canvas: tuple[int, int, int] | None,
    leading: list[bytes],
    frame: tuple[int, int] | None,
) -> None:
    bitstream = bytearray((WEBP_LOSSLESS.tobytes() if lossless else WEBP_LOSSY)[12:])
    if frame is not None and not lossless:  # the VP8 frame's own 14-bit sizes
        bitstream[14:18] = struct.pack("<HH", *frame)
    chunks = b"".join(kind + struct.pack("<I", 4) + bytes(4) for kind in leading)
    if canvas is not None:
        width, height, flags = canvas
        payload = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks = b"VP8X" + struct.pack("<I", 10) + payload + chunks
    agrees(riff(chunks + bytes(bitstream)))


BMP = cv2.imencode(".bmp", np.full((24, 16, 3), 90, np.uint8))[1].tobytes()


@FUZZ
@given(
    header_size=st.sampled_from([12, 13, 16, 35, 36, 40, 52, 56, 108, 124, 0xFFFF, 0xFFFFFFFF]),
    width=st.integers(-70, 70),
    height=st.integers(-70, 70),
)
def test_bmp_reader_reports_what_opencv_decodes(header_size: int, width: int, height: int) -> None:
    data = bytearray(BMP)
    data[14:18] = struct.pack("<I", header_size)
    if header_size == 12:
        data[18:22] = struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)
    else:
        data[18:26] = struct.pack("<ii", width, height)
    agrees(bytes(data))


def test_the_seeds_themselves_decode() -> None:
    """Control: the unedited seeds are accepted by both, so the properties above are not vacuous."""
    for data in [*JPEG_SEEDS, PNG, WEBP_LOSSY, WEBP_LOSSLESS.tobytes(), BMP]:
        assert agrees(data)
        read_header(data)
