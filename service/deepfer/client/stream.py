"""``WS /stream`` from Python: ``Stream`` (sync) and ``AsyncStream``, over the ``websockets`` library, whose sync and
asyncio clients mirror each other as httpx's do.

The server's close codes become ``StreamClosedError`` (``status`` the close code, ``code`` its name, ``message`` the
server's reason). The server answers every frame, in order: a frame it cannot read is a ``StreamError``, one it
did not analyse a ``StreamFrameDropped`` (with why), and the stream goes on; so a loop waiting for answers always
gets one.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from contextlib import AsyncExitStack, ExitStack
from typing import Annotated, Final
from urllib.parse import urlsplit, urlunsplit

import websockets.asyncio.client
import websockets.sync.client
from pydantic import Field, TypeAdapter
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from deepfer.client.core import (
    AsyncClosing,
    Closing,
    DeepFERClientError,
    ImageInput,
    ServiceUnreachableError,
    encode_image,
)
from deepfer.wire import StreamError, StreamFrameDropped, StreamReady, StreamResult

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


class Stream(Closing):
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


class AsyncStream(AsyncClosing):
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


def open_stream(url: str, api_key: str | None, timeout_s: float) -> Stream:
    """Open ``WS /stream`` under ``url``: the key sent (when given) and the server's ready message read."""
    url = stream_url(url)
    # Closed here if the handshake fails; once it succeeds the connection is the Stream's to close.
    with ExitStack() as on_failure:
        try:
            connection = on_failure.enter_context(websockets.sync.client.connect(url, open_timeout=timeout_s))
        except InvalidStatus as error:
            raise _refused(error) from error
        except (OSError, TimeoutError, InvalidHandshake) as error:
            raise ServiceUnreachableError(url, error) from error
        try:
            if api_key:
                connection.send(_key_message(api_key))
            ready = _parse_ready(connection.recv(timeout=timeout_s))
        except ConnectionClosed as error:
            raise _closed(error) from error
        on_failure.pop_all()
    return Stream(connection, ready, timeout_s)


async def open_async_stream(url: str, api_key: str | None, timeout_s: float) -> AsyncStream:
    """``open_stream`` for asyncio code."""
    url = stream_url(url)
    async with AsyncExitStack() as on_failure:
        try:
            connection = await on_failure.enter_async_context(
                websockets.asyncio.client.connect(url, open_timeout=timeout_s)
            )
        except InvalidStatus as error:
            raise _refused(error) from error
        except (OSError, TimeoutError, InvalidHandshake) as error:
            raise ServiceUnreachableError(url, error) from error
        try:
            if api_key:
                await connection.send(_key_message(api_key))
            ready = _parse_ready(await asyncio.wait_for(connection.recv(), timeout_s))
        except ConnectionClosed as error:
            raise _closed(error) from error
        on_failure.pop_all()
    return AsyncStream(connection, ready, timeout_s)
