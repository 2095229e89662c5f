"""DeepFER: facial emotion recognition served with ONNX Runtime.

``from deepfer import Client`` (or ``AsyncClient``) is all an integrator needs; it installs with ``pip install
deepfer`` and needs no ONNX Runtime, OpenCV or FastAPI. The service itself is ``deepfer[server]``.

Layers, bottom to top (each module imports only from below):
    contract, settings, errors     the ONNX contract and labels; DEEPFER_* settings; the error tree
    decode, detect, preprocess,    the stages: bytes -> H x W x 3 uint8; faces; the 48x48 framing; the ONNX
    classifier, batching           wrapper; the cross-request batcher (sessions, metrics: their helpers)
    pipeline                       analyze(bytes) = decode -> analyze_image(array) -> faces
    http/                          the web layer
    client, drawing, video/, cli   on top
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deepfer.client import (
        AsyncClient,
        Client,
        DeepFERClientError,
        RetryPolicy,
        ServiceUnreachableError,
        StreamClosedError,
    )

__all__ = ["AsyncClient", "Client", "DeepFERClientError", "RetryPolicy", "ServiceUnreachableError", "StreamClosedError"]


def __getattr__(name: str) -> Any:
    """The client names, imported on first use: a stage or the server importing ``deepfer.x`` loads no httpx."""
    if name in __all__:
        from deepfer import client

        return getattr(client, name)
    raise AttributeError(f"module 'deepfer' has no attribute {name!r}")
