"""Hostile inputs, crafted byte by byte: decompression and CPU bombs and malformed bodies.

Kept with the tests that prove each defence (``tests/http/test_hostile*.py``, ``tests/unit/test_decode.py``);
``bench/soak.py --hostile`` mixes them into good traffic. Every builder starts from a real encoder's output
(OpenCV) and edits only the structure an attacker controls, so what the service receives is a file a decoder
really accepts.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def jpeg(side_px: tuple[int, int] = (16, 24), *, progressive: bool = False, grey: bool = False) -> bytes:
    """A real flat JPEG of width x height from OpenCV (grey: one component, id 1)."""
    width, height = side_px
    image = np.full((height, width) if grey else (height, width, 3), 128, np.uint8)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])[1].tobytes()


def segment(marker: int, payload: bytes) -> bytes:
    """One JPEG marker segment: FF, marker, 16-bit length (counting itself), payload."""
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def sof0(width: int, height: int) -> bytes:
    """A baseline frame header for three components (4:2:0), as libjpeg writes it."""
    return segment(0xC0, struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01")


def with_frame_size(data: bytes, width: int, height: int) -> bytes:
    """``data`` (a baseline JPEG) with its SOF0 claiming width x height: the entropy data then runs out early,
    which libjpeg pads with grey, so the decoder allocates and fills the claimed size."""
    at = data.index(b"\xff\xc0")
    return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]


def stuffed_zero_pixel_bomb(width: int = 9000, height: int = 9000) -> bytes:
    """SOI, FF 00, 00 06, COM{a fake 8x8 SOF}, then the real frame: libjpeg reads FF 00 as a stuffed zero and scans
    on to the real SOF (width x height); a walk that takes FF 00 for a marker with a length finds the fake one."""
    real = with_frame_size(jpeg(), width, height)
    return real[:2] + b"\xff\x00\x00\x06" + segment(0xFE, sof0(8, 8)) + real[2:]


def _empty_ac_scan(blocks: int) -> bytes:
    """One AC scan (coefficients 1-63) of component 1 that codes every block as "end of band": its own Huffman
    table with the single symbol EOB14 (code '0'), each symbol plus 14 run bits covering 32767 blocks."""
    table = segment(0xC4, bytes([0x11, 1, *([0] * 15), 0xE0]))  # class AC, id 1: one code of length 1
    header = segment(0xDA, bytes([1, 1, 0x01, 1, 63, 0x00]))  # 1 component: id 1, DC 0 / AC 1, Ss 1, Se 63
    symbols = -(-blocks // 32767)
    bits = ("0" + "1" * 14) * symbols
    bits += "1" * (-len(bits) % 8)  # pad with ones, as the standard asks
    data = int(bits, 2).to_bytes(len(bits) // 8, "big").replace(b"\xff", b"\xff\x00")  # byte stuffing
    return table + header + data


def progressive_scan_bomb(width: int = 6000, height: int = 6000, scans: int = 6000) -> bytes:
    """A small, valid progressive grey JPEG of width x height with ``scans`` extra empty AC scans before EOI:
    a few dozen bytes per scan, and each scan makes the decoder visit every 8x8 block once more."""
    base = jpeg((width, height), progressive=True, grey=True)
    blocks = -(-width // 8) * -(-height // 8)
    return base[:-2] + _empty_ac_scan(blocks) * scans + base[-2:]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height with no image data."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(b"IEND", b"")


def png(width: int, height: int, stream: bytes, *, colour: int = 2, depth: int = 8, interlace: int = 0) -> bytes:
    """A PNG of width x height whose image data is the zlib ``stream``, split into 8 KB IDATs as libpng writes."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))
    idats = b"".join(png_chunk(b"IDAT", stream[at : at + 8192]) for at in range(0, len(stream), 8192))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idats + png_chunk(b"IEND", b"")


def zeros_deflated(mebibytes: int) -> bytes:
    """A valid zlib stream of ``mebibytes`` MiB of zeros, about 1 KB per MiB, built in milliseconds: after a full
    flush deflate starts afresh, so every later MiB compresses to the same bytes and is repeated, not compressed."""
    compressor, mib = zlib.compressobj(9), bytes(1 << 20)
    first = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeat = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    final_empty_block = b"\x03\x00"
    adler32_of_zeros = ((mebibytes << 20) % 65521) << 16 | 1  # a stays 1, b adds it once per byte
    return first + repeat * (mebibytes - 1) + final_empty_block + struct.pack(">I", adler32_of_zeros)


def png_idat_bomb(width: int = 64, height: int = 64, inflated_mib: int = 3000) -> bytes:
    """A PNG whose IHDR claims width x height RGB but whose image data inflates to ``inflated_mib`` MiB (3 MB on
    disk by default): libpng fills the rows, warns "Too much image data", and inflates the rest anyway."""
    return png(width, height, zeros_deflated(inflated_mib))


def many_parts_multipart(parts: int) -> tuple[bytes, str]:
    """(body, content type) of ``parts`` empty parts without headers (9 bytes each: 1.1 million fit in 10 MB), then
    one small JPEG in ``file``."""
    image = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    body = b"--b\r\n\r\n\r\n" * parts + image + jpeg() + b"\r\n--b--\r\n"
    return body, "multipart/form-data; boundary=b"


def webp_vp8x_canvas(data: bytes, width: int, height: int) -> bytes:
    """A WebP (re-)wrapped in the extended format, its VP8X canvas claiming width x height."""
    chunks = data[30:] if data[12:16] == b"VP8X" else data[12:]  # without any VP8X chunk it had
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (width - 1).to_bytes(3, "little")
    vp8x += (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + chunks
    return b"RIFF" + struct.pack("<I", len(body)) + body


def nested_json(depth: int = 100_000) -> bytes:
    return b'{"image": ' + b"[" * depth + b"]" * depth + b"}"


def huge_int_json(digits: int = 5000) -> bytes:
    return b'{"image": "aGVsbG8=", "n": ' + b"7" * digits + b"}"


def long_boundary_multipart(length: int = 300) -> tuple[bytes, str]:
    """(body, content type) of a multipart request whose boundary is ``length`` characters long."""
    boundary = "b" * length
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'.encode()
    return body + jpeg() + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
