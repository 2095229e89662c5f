"""Small helpers that build test inputs from the committed real images: other formats, EXIF, odd layouts."""

from __future__ import annotations

import itertools
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


def committed_faces() -> NDArray[np.uint8]:
    """The committed real faces (``tests/data/faces/test``, one folder per label) as N x 48 x 48 uint8."""
    paths = sorted((DATA / "faces" / "test").glob("*/*.jpg"))
    return np.stack([cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in paths])


def face_batch() -> NDArray[np.float32]:
    """The committed faces as a classifier takes them: N x 48 x 48 x 1 float32, 0..255."""
    return committed_faces()[..., np.newaxis].astype(np.float32)


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


_MP4_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl"})


def retime_mp4(path: Path, times_s: list[float]) -> None:
    """Give the frames of a one-track MP4 these presentation times: a real variable-frame-rate file.

    OpenCV's writer is constant-rate, so this rewrites the track's time-to-sample box (``stts``, one entry per
    frame) and the sizes of the boxes that hold it. The writer puts ``moov`` after the media data, so no chunk
    offset moves. Times must be exact in the track's timescale (read from ``mdhd``).
    """
    data = path.read_bytes()
    mdhd = data.index(b"mdhd")
    timescale_at = mdhd + 8 + (8 if data[mdhd + 4] == 0 else 16)
    timescale = int.from_bytes(data[timescale_at : timescale_at + 4], "big")
    ticks = [round(t * timescale) for t in times_s]
    assert all(abs(tick - t * timescale) < 1e-6 for tick, t in zip(ticks, times_s, strict=True)), timescale
    deltas = [b - a for a, b in itertools.pairwise(ticks)] + [ticks[-1] - ticks[-2]]
    stts_body = struct.pack(">II", 0, len(deltas)) + b"".join(struct.pack(">II", 1, d) for d in deltas)
    stts = struct.pack(">I", 8 + len(stts_body)) + b"stts" + stts_body

    def rebuild(start: int, end: int) -> bytes:
        out = b""
        while start < end:
            size, kind = struct.unpack(">I4s", data[start : start + 8])
            assert size >= 8, "64-bit or open-ended boxes are not expected from OpenCV's writer"
            if kind in _MP4_CONTAINERS:
                body = rebuild(start + 8, start + size)
                out += struct.pack(">I", 8 + len(body)) + kind + body
            elif kind == b"edts":
                pass  # the edit list would cut playback at the old duration: without one, every frame shows
            elif kind == b"stts":
                count = struct.unpack(">I", data[start + 12 : start + 16])[0]
                total = sum(struct.unpack(">I", data[start + 16 + 8 * i : start + 20 + 8 * i])[0] for i in range(count))
                assert total == len(times_s), f"the file has {total} frames, {len(times_s)} times given"
                out += stts
            else:
                out += data[start : start + size]
            start += size
        return out

    moov = data.index(b"moov") - 4
    moov_size = struct.unpack(">I", data[moov : moov + 4])[0]
    assert moov + moov_size == len(data), "moov is not the last box: chunk offsets would move"
    path.write_bytes(data[:moov] + rebuild(moov, len(data)))
