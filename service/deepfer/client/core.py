"""What the sync and async clients share: the errors, the retry policy, image encoding, and every endpoint
described once as a ``Call`` (method, path, body, how to read the answer, whether a 503 is retried).

``Client`` and ``AsyncClient`` (``deepfer.client.rest``) differ only in how they send a call and sleep, and the
retry loop is written once (``retrying``) as a generator they both drive, so the two cannot drift.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Final, Generic, Self, TypeVar

import httpx
import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError

from deepfer.wire import BatchResponse, ErrorResponse, ModelResponse, PredictResponse, Readiness

#: What ``predict`` accepts: a file path, the encoded file's bytes, or a decoded H x W x 3 BGR (or H x W grey)
#: uint8 array, OpenCV's layout.
ImageInput = str | os.PathLike[str] | bytes | NDArray[np.uint8]

Answer = TypeVar("Answer")

API_KEY_HEADER: Final = "X-API-Key"
SERVICE_UNAVAILABLE: Final = 503


class DeepFERClientError(Exception):
    """The service refused a request (or kept answering 503): ``status``, ``code`` and ``message`` say why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ServiceUnreachableError(DeepFERClientError):
    """No answer at all: nothing listens at the URL, DNS fails, or the connection broke (``status`` 0)."""

    def __init__(self, url: str, error: Exception) -> None:
        reason = str(error) or type(error).__name__
        super().__init__(0, "unreachable", f"cannot reach the DeepFER service at {url}: {reason}")
        self.url = url


@dataclass(frozen=True)
class RetryPolicy:
    """How 503s are retried: at most ``retries`` more attempts, each after the server's ``Retry-After``.

    The wait is capped so a misconfigured server cannot stall a caller for an hour, and a 503 without a usable
    header waits ``default_wait_s``.
    """

    retries: int = 3
    max_wait_s: float = 10.0
    default_wait_s: float = 0.5

    def wait_s(self, response: httpx.Response) -> float:
        """Seconds to wait before the next attempt, from ``Retry-After`` (delta-seconds or an HTTP date)."""
        header = response.headers.get("Retry-After", "").strip()
        try:
            wait = float(header)
        except ValueError:
            try:
                wait = parsedate_to_datetime(header).timestamp() - time.time()
            except (TypeError, ValueError):
                wait = self.default_wait_s
        return min(max(wait, 0.0), self.max_wait_s)


def retrying(call: Call[Answer], policy: RetryPolicy) -> Generator[float, httpx.Response, Answer]:
    """The retry loop without its I/O: yields the seconds to wait before each attempt (0 before the first), is sent
    that attempt's response, and returns the parsed answer. ``Client`` and ``AsyncClient`` drive it, each sending
    and sleeping its own way, so the policy cannot differ between them."""
    response = yield 0.0
    for _ in range(policy.retries):
        if not call.retries(response):
            break
        response = yield policy.wait_s(response)
    return call.parse(response)


def encode_image(image: ImageInput) -> tuple[str, bytes]:
    """(file name, encoded bytes) for the multipart upload.

    Arrays are sent as PNG: lossless, so the server analyses exactly the pixels the caller holds and gets the
    same answer as the local pipeline would.
    """
    if isinstance(image, bytes):
        return "image", image
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"expected an H x W or H x W x C uint8 array, got {image.dtype} {image.shape}")
        try:
            import cv2
        except ImportError:
            raise ImportError(
                "sending a numpy array needs OpenCV to encode it: pip install 'deepfer[server]' "
                "(or opencv-python-headless), or send the file's path or bytes"
            ) from None
        ok, encoded = cv2.imencode(".png", image)
        if not ok:
            raise ValueError(f"cannot encode an array of shape {image.shape} as PNG")
        return "image.png", encoded.tobytes()
    path = Path(image)
    return path.name, path.read_bytes()


@dataclass(frozen=True)
class PredictOptions:
    """The prediction routes' query options, as ``Client.predict`` and ``predict_batch`` take them; None leaves
    an option to the server's default."""

    detect: bool = True
    max_faces: int | None = None
    min_face_size: int | None = None
    min_score: float | None = None
    min_sharpness: float | None = None

    def params(self) -> dict[str, str | int | float]:
        """The query parameters the server reads; unset ones are left out."""
        params: dict[str, str | int | float] = {"detect": "true" if self.detect else "false"}
        for name in ("max_faces", "min_face_size", "min_score", "min_sharpness"):
            if (value := getattr(self, name)) is not None:
                params[name] = value
        return params


def _raise_for(response: httpx.Response) -> None:
    """``DeepFERClientError`` with the server's own error code and message for anything but a 200."""
    if response.status_code == httpx.codes.OK:
        return
    try:
        error = ErrorResponse.model_validate_json(response.content).error
        code, message = error.code, error.message
    except ValidationError:
        code, message = "http_error", response.text[:200] or response.reason_phrase
    raise DeepFERClientError(response.status_code, code, message)


def _parse(response: httpx.Response) -> PredictResponse:
    """The response model for a 200, ``DeepFERClientError`` (with the server's own code) for anything else."""
    _raise_for(response)
    return PredictResponse.model_validate_json(response.content)


def _parse_batch(response: httpx.Response) -> BatchResponse:
    _raise_for(response)
    return BatchResponse.model_validate_json(response.content)


def _parse_model(response: httpx.Response) -> ModelResponse:
    _raise_for(response)
    return ModelResponse.model_validate_json(response.content)


def _parse_readiness(response: httpx.Response) -> Readiness:
    """``/readyz`` answers 503 with the same body while warming up or draining: that is an answer, not an error."""
    if response.status_code == SERVICE_UNAVAILABLE:
        try:
            return Readiness.model_validate_json(response.content)
        except ValidationError:
            pass  # a 503 from something else in front of the service (a proxy): an error after all
    _raise_for(response)
    return Readiness.model_validate_json(response.content)


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {API_KEY_HEADER: api_key} if api_key else {}


@dataclass(frozen=True)
class Call(Generic[Answer]):
    """One request to the service and how to read its answer; built once, sent by either client."""

    method: str
    path: str
    parse: Callable[[httpx.Response], Answer]
    params: dict[str, str | int | float] | None = None
    files: list[tuple[str, tuple[str, bytes]]] | None = None  # multipart (field, (file name, bytes))
    retry_503: bool = True  # False for /readyz, whose 503 is the answer

    def retries(self, response: httpx.Response) -> bool:
        return self.retry_503 and response.status_code == SERVICE_UNAVAILABLE


def predict_call(image: ImageInput, options: PredictOptions) -> Call[PredictResponse]:
    """``POST /predict``: faces, boxes and seven probabilities for one image."""
    return Call("POST", "/predict", _parse, options.params(), [("file", encode_image(image))])


def batch_call(images: Sequence[ImageInput], options: PredictOptions) -> Call[BatchResponse]:
    """``POST /predict/batch``: several images in one request, so their faces share the server's batches."""
    if isinstance(images, (str, bytes, np.ndarray, os.PathLike)):
        raise TypeError("predict_batch takes a sequence of images; use predict for one")
    if not images:
        raise ValueError("predict_batch needs at least one image")
    files = [("files", encode_image(image)) for image in images]
    return Call("POST", "/predict/batch", _parse_batch, options.params(), files)


MODEL_CALL: Final = Call("GET", "/model", _parse_model)
READY_CALL: Final = Call("GET", "/readyz", _parse_readiness, retry_503=False)


class Closing:
    """``with`` closes: the one context-manager protocol of the client, the stream and their async forms."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class AsyncClosing:
    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()
