"""A small typed client for the DeepFER HTTP API: ``Client`` (sync) and ``AsyncClient``, both on httpx.

    with Client("http://127.0.0.1:8000", api_key="...") as client:
        result = client.predict("photo.jpg")          # or bytes, or an H x W x 3 BGR uint8 array
        for face in result.faces:
            print(face.box, face.emotion, face.probabilities.happy)
        batch = client.predict_batch(["a.jpg", "b.png"])   # one request; a bad file is its own error entry
        client.model().version, client.ready().ready

        with client.stream() as stream:                  # WS /stream: one camera, results with track ids
            stream.ready.limits.max_fps
            for message in stream.results(frames):       # frames: any iterable of images, sent at most max_fps
                ...                                      # one answer per frame: a StreamResult, a StreamError
                                                         # for a bad frame, or a StreamFrameDropped

Every endpoint is described once, as a ``_Call`` (method, path, body, how to read the answer, whether a 503 is
retried); ``Client`` and ``AsyncClient`` differ only in how they send one (``_send``), so the two cannot drift.

Answers are the service's own response models (``deepfer.wire``), so a field renamed on the server breaks
here at once instead of silently. A 503 (the server's bounded queue is full) is retried after the
``Retry-After`` it names, a bounded number of times and never longer than ``max_retry_wait_s`` per wait;
every other failure raises ``DeepFERClientError`` with the server's error code and message, and a service that
cannot be reached raises ``ServiceUnreachableError`` (a ``DeepFERClientError``) naming the URL. The retry policy is
written once (``_retrying``); each client only sends and sleeps its own way.

A stream (``WS /stream``, protocol in ``deepfer.server.stream``) speaks through ``websockets``, whose sync and
asyncio clients mirror each other as httpx's do. The server's close codes become ``StreamClosedError`` (``status``
the close code, ``code`` its name, ``message`` the server's reason). The server answers every frame, in order: a
frame it cannot read is a ``StreamError``, one it did not analyse a ``StreamFrameDropped`` (with why), and the
stream goes on; so a loop waiting for answers always gets one.

Needs only httpx, websockets, pydantic and numpy (``pip install deepfer``): OpenCV is imported only to send a
numpy array.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Annotated, Final, Generic, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import websockets.asyncio.client
import websockets.sync.client
from numpy.typing import NDArray
from pydantic import Field, TypeAdapter, ValidationError
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from deepfer.wire import (
    BatchResponse,
    ErrorResponse,
    ModelResponse,
    PredictResponse,
    Readiness,
    StreamError,
    StreamFrameDropped,
    StreamReady,
    StreamResult,
)

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


def _retrying(call: _Call[Answer], policy: RetryPolicy) -> Generator[float, httpx.Response, Answer]:
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


def _options(detect: bool, max_faces: int | None, min_face_size: int | None) -> dict[str, str | int]:
    """The query parameters the server reads; unset ones are left to the server's defaults."""
    params: dict[str, str | int] = {"detect": "true" if detect else "false"}
    if max_faces is not None:
        params["max_faces"] = max_faces
    if min_face_size is not None:
        params["min_face_size"] = min_face_size
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


def _headers(api_key: str | None) -> dict[str, str]:
    return {API_KEY_HEADER: api_key} if api_key else {}


@dataclass(frozen=True)
class _Call(Generic[Answer]):
    """One request to the service and how to read its answer; built once, sent by either client."""

    method: str
    path: str
    parse: Callable[[httpx.Response], Answer]
    params: dict[str, str | int] | None = None
    files: list[tuple[str, tuple[str, bytes]]] | None = None  # multipart (field, (file name, bytes))
    retry_503: bool = True  # False for /readyz, whose 503 is the answer

    def retries(self, response: httpx.Response) -> bool:
        return self.retry_503 and response.status_code == SERVICE_UNAVAILABLE


def _predict_call(
    image: ImageInput, detect: bool, max_faces: int | None, min_face_size: int | None
) -> _Call[PredictResponse]:
    """``POST /predict``: faces, boxes and seven probabilities for one image."""
    return _Call(
        "POST", "/predict", _parse, _options(detect, max_faces, min_face_size), [("file", encode_image(image))]
    )


def _batch_call(
    images: Sequence[ImageInput], detect: bool, max_faces: int | None, min_face_size: int | None
) -> _Call[BatchResponse]:
    """``POST /predict/batch``: several images in one request, so their faces share the server's batches."""
    if isinstance(images, (str, bytes, np.ndarray, os.PathLike)):
        raise TypeError("predict_batch takes a sequence of images; use predict for one")
    if not images:
        raise ValueError("predict_batch needs at least one image")
    files = [("files", encode_image(image)) for image in images]
    return _Call("POST", "/predict/batch", _parse_batch, _options(detect, max_faces, min_face_size), files)


_MODEL_CALL: Final = _Call("GET", "/model", _parse_model)
_READY_CALL: Final = _Call("GET", "/readyz", _parse_readiness, retry_503=False)


class _Closing:
    """``with`` closes: the one context-manager protocol of the client, the stream and their async forms."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class _AsyncClosing:
    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()


class Client(_Closing):
    """Synchronous client; one connection pool per instance, so reuse it (or use it as a context manager)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.url = url
        self.retry = retry or RetryPolicy()
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._http = httpx.Client(base_url=url, headers=_headers(api_key), timeout=timeout_s)

    def predict(
        self,
        image: ImageInput,
        *,
        detect: bool = True,
        max_faces: int | None = None,
        min_face_size: int | None = None,
    ) -> PredictResponse:
        """Faces, boxes and seven probabilities for one image (``POST /predict``)."""
        return self._send(_predict_call(image, detect, max_faces, min_face_size))

    def predict_batch(
        self,
        images: Sequence[ImageInput],
        *,
        detect: bool = True,
        max_faces: int | None = None,
        min_face_size: int | None = None,
    ) -> BatchResponse:
        """Several images in one request (``POST /predict/batch``): one entry per image, in order; a file the
        server refuses is an entry with ``error`` set, not an exception."""
        return self._send(_batch_call(images, detect, max_faces, min_face_size))

    def model(self) -> ModelResponse:
        """The served model's name, version, labels and recorded metrics (``GET /model``)."""
        return self._send(_MODEL_CALL)

    def ready(self) -> Readiness:
        """Whether the service takes traffic (``GET /readyz``); not ready (warming up, draining) is an answer."""
        return self._send(_READY_CALL)

    def stream(self) -> Stream:
        """Open ``WS /stream``: the key sent (when this client has one) and the server's ready message read.

        Use it as a context manager, which closes the stream; ``StreamClosedError`` if the server refuses it.
        """
        url = stream_url(self.url)
        # Closed here if the handshake fails; once it succeeds the connection is the Stream's to close.
        with ExitStack() as on_failure:
            try:
                connection = on_failure.enter_context(websockets.sync.client.connect(url, open_timeout=self._timeout_s))
            except InvalidStatus as error:
                raise _refused(error) from error
            except (OSError, TimeoutError, InvalidHandshake) as error:
                raise ServiceUnreachableError(url, error) from error
            try:
                if self._api_key:
                    connection.send(_key_message(self._api_key))
                ready = _parse_ready(connection.recv(timeout=self._timeout_s))
            except ConnectionClosed as error:
                raise _closed(error) from error
            on_failure.pop_all()
        return Stream(connection, ready, self._timeout_s)

    def _send(self, call: _Call[Answer]) -> Answer:
        steps = _retrying(call, self.retry)
        wait = next(steps)
        while True:
            time.sleep(wait)
            try:
                wait = steps.send(self._request(call))
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def _request(self, call: _Call[Answer]) -> httpx.Response:
        try:
            return self._http.request(call.method, call.path, params=call.params, files=call.files)
        except httpx.TransportError as error:
            raise ServiceUnreachableError(self.url, error) from error

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


class AsyncClient(_AsyncClosing):
    """The same client for asyncio code: ``await client.predict(...)``; retries sleep without blocking the loop."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.url = url
        self.retry = retry or RetryPolicy()
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(base_url=url, headers=_headers(api_key), timeout=timeout_s)

    async def predict(
        self,
        image: ImageInput,
        *,
        detect: bool = True,
        max_faces: int | None = None,
        min_face_size: int | None = None,
    ) -> PredictResponse:
        """Faces, boxes and seven probabilities for one image (``POST /predict``)."""
        return await self._send(_predict_call(image, detect, max_faces, min_face_size))

    async def predict_batch(
        self,
        images: Sequence[ImageInput],
        *,
        detect: bool = True,
        max_faces: int | None = None,
        min_face_size: int | None = None,
    ) -> BatchResponse:
        """Several images in one request (``POST /predict/batch``); see ``Client.predict_batch``."""
        return await self._send(_batch_call(images, detect, max_faces, min_face_size))

    async def model(self) -> ModelResponse:
        """The served model's name, version, labels and recorded metrics (``GET /model``)."""
        return await self._send(_MODEL_CALL)

    async def ready(self) -> Readiness:
        """Whether the service takes traffic (``GET /readyz``); not ready (warming up, draining) is an answer."""
        return await self._send(_READY_CALL)

    async def stream(self) -> AsyncStream:
        """Open ``WS /stream`` (see ``Client.stream``): ``async with await client.stream() as stream:``."""
        url = stream_url(self.url)
        async with AsyncExitStack() as on_failure:
            try:
                connection = await on_failure.enter_async_context(
                    websockets.asyncio.client.connect(url, open_timeout=self._timeout_s)
                )
            except InvalidStatus as error:
                raise _refused(error) from error
            except (OSError, TimeoutError, InvalidHandshake) as error:
                raise ServiceUnreachableError(url, error) from error
            try:
                if self._api_key:
                    await connection.send(_key_message(self._api_key))
                ready = _parse_ready(await asyncio.wait_for(connection.recv(), self._timeout_s))
            except ConnectionClosed as error:
                raise _closed(error) from error
            on_failure.pop_all()
        return AsyncStream(connection, ready, self._timeout_s)

    async def _send(self, call: _Call[Answer]) -> Answer:
        steps = _retrying(call, self.retry)
        wait = next(steps)
        while True:
            await asyncio.sleep(wait)
            try:
                wait = steps.send(await self._request(call))
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def _request(self, call: _Call[Answer]) -> httpx.Response:
        try:
            return await self._http.request(call.method, call.path, params=call.params, files=call.files)
        except httpx.TransportError as error:
            raise ServiceUnreachableError(self.url, error) from error

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()


#: What a stream answers for each frame: its faces with track ids, why it could not read it, or why it dropped it.
StreamAnswer = StreamResult | StreamError | StreamFrameDropped
StreamMessage = Annotated[StreamAnswer, Field(discriminator="type")]
_STREAM_MESSAGE: Final[TypeAdapter[StreamAnswer]] = TypeAdapter(StreamMessage)

#: The close codes of ``deepfer.server.stream`` (and the standard ones a proxy or a restart sends), by name.
CLOSE_CODES: Final = {
    1000: "closed",
    1001: "going_away",
    1003: "unsupported_data",
    1006: "connection_lost",
    1007: "invalid_data",
    1008: "policy_violation",
    1009: "message_too_big",
    1011: "server_error",
    1012: "service_restart",
    1013: "try_again_later",
    4401: "unauthorized",
    4408: "idle_timeout",
}
#: How often ``results`` looks up from receiving to see whether the feed failed or its answers are overdue.
_POLL_S: Final = 0.1


class StreamClosedError(DeepFERClientError):
    """The stream ended: ``status`` is the WebSocket close code (4401 a wrong key, 1003 a message of the wrong
    type, 1007 text that is not UTF-8, 1008 a bad first message or unread pongs, 1009 a frame over
    ``ready.limits.max_message_bytes``, 4408 idle or no key in time, 1013 too many streams), ``code`` its name,
    ``message`` the server's reason."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(close_code, CLOSE_CODES.get(close_code, "closed"), reason or "the stream was closed")
        self.close_code = close_code
        self.reason = reason


def stream_url(url: str) -> str:
    """``ws://`` (``wss://`` for https) to ``/stream`` under the client's base URL, a path prefix kept."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/stream", "", ""))


def _closed(error: ConnectionClosed) -> StreamClosedError:
    if error.rcvd is None:
        return StreamClosedError(1006, "the connection dropped without a close frame")
    return StreamClosedError(error.rcvd.code, error.rcvd.reason)


def _refused(error: InvalidStatus) -> DeepFERClientError:
    """An HTTP answer instead of the upgrade: a proxy without WebSocket support, or a service without /stream."""
    status = error.response.status_code
    body = error.response.body.decode(errors="replace")[:200] if error.response.body else ""
    return DeepFERClientError(status, "websocket_refused", f"the WebSocket upgrade was refused: {body or status}")


def _key_message(api_key: str) -> str:
    return json.dumps({"api_key": api_key})


def _parse_ready(message: str | bytes) -> StreamReady:
    return StreamReady.model_validate_json(message)


def _parse_message(message: str | bytes) -> StreamAnswer:
    return _STREAM_MESSAGE.validate_json(message)


class _Pacer:
    """Spaces sends ``1 / fps`` apart, so a fast iterable (files on disk) is not mostly dropped over the rate."""

    def __init__(self, fps: float) -> None:
        self._gap_s = 1.0 / fps
        self._next = time.monotonic()

    def delay_s(self) -> float:
        """Seconds to wait before the next send; books that send's slot."""
        now = time.monotonic()
        wait = max(self._next - now, 0.0)
        self._next = max(self._next, now) + self._gap_s
        return wait


class _Outstanding:
    """Whether ``results`` is done: the feed ended and its last frame answered (the server answers every frame, in
    order). ``check`` raises ``TimeoutError`` once frames have waited ``timeout_s`` with no answer, so a server
    that stops answering ends the loop instead of hanging it."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._fed = False
        self._last_sent = -1
        self._answered = -1
        self._waiting_since = time.monotonic()

    def sent(self, seq: int) -> None:
        if self._answered >= self._last_sent:  # nothing was due: the wait starts now
            self._waiting_since = time.monotonic()
        self._last_sent = seq

    def fed(self) -> None:
        self._fed = True

    def answered(self, message: StreamAnswer) -> None:
        self._answered = message.seq
        self._waiting_since = time.monotonic()

    def done(self) -> bool:
        return self._fed and self._answered >= self._last_sent

    def check(self) -> None:
        waited_s = time.monotonic() - self._waiting_since
        if self._answered < self._last_sent and waited_s > self._timeout_s:
            raise TimeoutError(f"frames {self._answered + 1}..{self._last_sent} unanswered for {waited_s:.1f} s")


class Stream(_Closing):
    """One open ``WS /stream`` (from ``Client.stream()``): ``send`` frames, ``receive`` answers, or ``results``.

    ``send`` never waits for an answer, and every frame gets one, in order: the server analyses only the newest
    frame, so a client that sends faster than it analyses gets results for some frames and ``StreamFrameDropped``
    for the rest. ``send`` and ``receive`` may run in different threads, as ``results`` does.
    """

    def __init__(
        self, connection: websockets.sync.client.ClientConnection, ready: StreamReady, timeout_s: float
    ) -> None:
        self.ready = ready
        self._connection = connection
        self._timeout_s = timeout_s
        self._sent = 0
        self._lock = threading.Lock()

    def send(self, image: ImageInput) -> int:
        """Send one frame (path, bytes or BGR array, as ``predict`` takes); returns its ``seq``."""
        _, data = encode_image(image)
        with self._lock:  # the server numbers frames in arrival order: so must we
            try:
                self._connection.send(data)
            except ConnectionClosed as error:
                raise _closed(error) from error
            seq, self._sent = self._sent, self._sent + 1
        return seq

    def receive(self, timeout_s: float | None = None) -> StreamAnswer:
        """The next answer; ``TimeoutError`` after ``timeout_s`` (default the client's), ``StreamClosedError`` if
        the server closed the stream."""
        try:
            message = self._connection.recv(timeout=self._timeout_s if timeout_s is None else timeout_s)
        except ConnectionClosed as error:
            raise _closed(error) from error
        return _parse_message(message)

    def results(self, frames: Iterable[ImageInput], *, fps: float | None = None) -> Iterator[StreamAnswer]:
        """Send ``frames`` from a thread, at most ``fps`` (default the server's ``max_fps``) a second, and yield
        each frame's answer as it comes: sending never waits on a slow consumer or a slow server. Ends once the
        last frame is answered; ``TimeoutError`` if answers stop coming for the client's timeout; leaving the
        loop early stops the sending."""
        pacer, pending, stop = (
            _Pacer(fps or self.ready.limits.max_fps),
            _Outstanding(self._timeout_s),
            threading.Event(),
        )
        failure: list[BaseException] = []

        def feed() -> None:
            try:
                for frame in frames:
                    if stop.wait(pacer.delay_s()):
                        return
                    pending.sent(self.send(frame))
            except BaseException as error:
                failure.append(error)
            finally:
                pending.fed()

        feeder = threading.Thread(target=feed, name="deepfer-stream-feed", daemon=True)
        feeder.start()
        try:
            while not pending.done():
                try:
                    message = self.receive(timeout_s=_POLL_S)
                except TimeoutError:
                    if failure:
                        raise failure[0] from None
                    pending.check()
                    continue
                pending.answered(message)
                yield message
            if failure:
                raise failure[0]
        finally:
            stop.set()
            feeder.join(timeout=1.0)

    def close(self) -> None:
        """Close the stream (a normal 1000 close); the server frees its slot and tracker."""
        self._connection.close()


class AsyncStream(_AsyncClosing):
    """``Stream`` for asyncio code (from ``await AsyncClient.stream()``); ``results`` feeds from a task and also
    takes an async iterable (a camera read in an executor, a queue)."""

    def __init__(
        self, connection: websockets.asyncio.client.ClientConnection, ready: StreamReady, timeout_s: float
    ) -> None:
        self.ready = ready
        self._connection = connection
        self._timeout_s = timeout_s
        self._sent = 0

    async def send(self, image: ImageInput) -> int:
        """Send one frame; returns its ``seq``. Concurrent sends are numbered in the order they are called."""
        _, data = encode_image(image)
        seq, self._sent = self._sent, self._sent + 1
        try:
            await self._connection.send(data)
        except ConnectionClosed as error:
            raise _closed(error) from error
        return seq

    async def receive(self, timeout_s: float | None = None) -> StreamAnswer:
        """The next answer; ``TimeoutError`` after ``timeout_s`` (default the client's), ``StreamClosedError``."""
        try:
            message = await asyncio.wait_for(
                self._connection.recv(), self._timeout_s if timeout_s is None else timeout_s
            )
        except ConnectionClosed as error:
            raise _closed(error) from error
        return _parse_message(message)

    async def results(
        self, frames: Iterable[ImageInput] | AsyncIterable[ImageInput], *, fps: float | None = None
    ) -> AsyncIterator[StreamAnswer]:
        """See ``Stream.results``: frames sent from a task at most ``fps`` a second, answers yielded as they come."""
        pacer, pending = _Pacer(fps or self.ready.limits.max_fps), _Outstanding(self._timeout_s)

        async def feed() -> None:
            try:
                async for frame in _aiter(frames):
                    await asyncio.sleep(pacer.delay_s())
                    pending.sent(await self.send(frame))
            finally:
                pending.fed()

        feeder = asyncio.create_task(feed())
        try:
            while not pending.done():
                if feeder.done():
                    feeder.result()  # a failed feed raises here
                try:
                    message = await self.receive(timeout_s=_POLL_S)
                except TimeoutError:
                    pending.check()
                    continue
                pending.answered(message)
                yield message
            await feeder
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)

    async def close(self) -> None:
        await self._connection.close()


async def _aiter(frames: Iterable[ImageInput] | AsyncIterable[ImageInput]) -> AsyncIterator[ImageInput]:
    if isinstance(frames, AsyncIterable):
        async for frame in frames:
            yield frame
    else:
        for frame in frames:
            yield frame
