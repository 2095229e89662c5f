"""HTTP with a test server read below the level of a client call: bytes on a raw socket, for requests an HTTP
client refuses to send (malformed, trickled, oversized), and the code of the error envelope an answer carries."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def raw_exchange(url: str, chunks: Iterator[bytes], timeout_s: float = 10.0) -> bytes:
    """Send chunks on one raw connection (stopping if the server closes it), then read everything it answers."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as raw:
        try:
            for chunk in chunks:
                raw.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while data := raw.recv(65536):
            answer += data
        return answer
