"""``WS /stream``: live frames in, one JSON result per processed frame out, one ``Tracker`` per connection.

The protocol, one connection per camera::

    client                                      server
    open ws://host/stream                 ->    accept; close 1013 when stream_max_connections are open
    text {"api_key": "<key>"}             ->    first message when the service has API keys (ignored without)
                                          <-    {"type": "ready", "limits": {...}, "model": {...}}
    binary JPEG/PNG/WebP/BMP frame        ->    into a one-frame mailbox (latest frame wins)
                                          <-    {"type": "result", "seq", "time_s", "faces", "dropped", "timing"}
                                          <-    {"type": "error", "seq", "error": {"code", "message"}}: that frame
                                                was no image (or the service was overloaded); the stream goes on

Close codes: 4401 a missing or wrong key; 1003 a text message where a frame was expected, or a first message
that is not ``{"api_key": "..."}``; 1009 a message over ``stream_max_message_bytes`` (refused by uvicorn's
websockets layer as it arrives: ``ws_max_size``); 4408 no message for ``stream_idle_timeout_s``; 1013 too many
streams. Each ends only that stream: the server serves on.

Why the key is the first message: a browser cannot set headers on a WebSocket. A key in the URL would land in
access logs, proxy logs and browser history. ``Sec-WebSocket-Protocol`` is a header too, one proxies log, and
it only carries token characters. A first message is sent by any client, travels inside the (TLS) stream, and
is never logged; the cost is that an unauthenticated socket exists until that message, bounded by the idle
timeout and the connection limit.

Latest frame wins: a receiver task reads every message at once and puts the frame in a one-frame mailbox; a
processor task takes the newest frame, analyses it with the pipeline of ``/predict`` (so the same decode
limits, batcher and models), runs the tracker and sends the result. A frame that a newer one replaces before
the processor takes it is dropped and counted (``dropped.stale``); so is a frame sent within ``1 /
stream_max_fps`` of the last one accepted (``dropped.over_rate``). Nothing queues: memory per stream is two
frames. The tracker's clock is the frame's arrival time, since a live stream has no container time.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from typing import Final

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from deepfer.errors import DeepFERError
from deepfer.http.routes import key_matches
from deepfer.http.schemas import (
    ErrorBody,
    ModelSummary,
    StreamDropped,
    StreamError,
    StreamFace,
    StreamLimits,
    StreamReady,
    StreamResult,
    StreamTiming,
)
from deepfer.pipeline import Options, Pipeline
from deepfer.settings import Settings
from deepfer.tracking import Detection, Tracker

UNAUTHORIZED: Final = 4401
IDLE: Final = 4408
UNSUPPORTED_DATA: Final = 1003  # RFC 6455: a data type the endpoint cannot accept
TRY_AGAIN_LATER: Final = 1013

stream_router = APIRouter()


class _CloseStreamError(Exception):
    """End this stream with ``code`` and ``reason`` (sent to the client in the close frame)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class _Frame:
    seq: int
    data: bytes
    arrived: float  # time.perf_counter() when the message was read


class _Mailbox:
    """One frame slot: ``put`` replaces the waiting frame (counting it dropped), ``take`` waits for one."""

    def __init__(self) -> None:
        self._frame: _Frame | None = None
        self._ready = asyncio.Event()
        self.stale = 0
        self.over_rate = 0

    def put(self, frame: _Frame) -> None:
        if self._frame is not None:
            self.stale += 1
        self._frame = frame
        self._ready.set()

    async def take(self) -> _Frame:
        await self._ready.wait()
        self._ready.clear()
        frame, self._frame = self._frame, None
        assert frame is not None
        return frame


@stream_router.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    """One camera's stream; see the module docstring for the protocol."""
    settings: Settings = websocket.app.state.settings
    pipeline: Pipeline = websocket.app.state.pipeline
    state = websocket.app.state
    await websocket.accept()
    if state.streams >= settings.stream_max_connections:
        await websocket.close(TRY_AGAIN_LATER, f"{state.streams} streams open (stream_max_connections)")
        return
    state.streams += 1
    close: _CloseStreamError | None = None
    try:
        await _serve(websocket, settings, pipeline)
    except _CloseStreamError as error:
        close = error
    except WebSocketDisconnect:
        pass
    finally:
        # Freed before the close frame goes out, so a client that reconnects on seeing it finds the slot free.
        state.streams -= 1
    if close is not None:
        await websocket.close(close.code, close.reason)


async def _serve(websocket: WebSocket, settings: Settings, pipeline: Pipeline) -> None:
    if settings.api_keys:
        await _authenticate(websocket, settings)
    limits = StreamLimits(
        max_message_bytes=settings.stream_max_message_bytes,
        max_fps=settings.stream_max_fps,
        idle_timeout_s=settings.stream_idle_timeout_s,
    )
    ready = StreamReady(limits=limits, model=ModelSummary.of(pipeline.model))
    await websocket.send_text(ready.model_dump_json())
    mailbox, opened = _Mailbox(), time.perf_counter()
    receiver = asyncio.create_task(_receive(websocket, settings, mailbox))
    processor = asyncio.create_task(_process(websocket, pipeline, mailbox, opened))
    try:
        # The receiver ends the stream (disconnect, protocol error, idle); the processor only on a failed send.
        await asyncio.wait({receiver, processor}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (receiver, processor):
            task.cancel()
        await asyncio.gather(receiver, processor, return_exceptions=True)
    for task in (receiver, processor):
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error


async def _next_message(websocket: WebSocket, settings: Settings) -> dict[str, object]:
    try:
        message = await asyncio.wait_for(websocket.receive(), settings.stream_idle_timeout_s)
    except TimeoutError:
        raise _CloseStreamError(IDLE, f"no message for {settings.stream_idle_timeout_s:g} s") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(int(message.get("code", 1000)))
    return message


async def _authenticate(websocket: WebSocket, settings: Settings) -> None:
    """The first message must be the text ``{"api_key": "<key>"}``, within the idle timeout."""
    given = _given_key(await _next_message(websocket, settings))
    if given is None:
        raise _CloseStreamError(
            UNSUPPORTED_DATA, 'this service has API keys: send {"api_key": "<key>"} as the first message'
        )
    if not key_matches(given, settings.api_keys):
        raise _CloseStreamError(UNAUTHORIZED, "invalid API key")


def _given_key(message: dict[str, object]) -> str | None:
    """The key of a ``{"api_key": "<key>"}`` text message; None for any other message."""
    text = message.get("text")
    try:
        given = json.loads(text)["api_key"] if isinstance(text, str) else None
    except (ValueError, KeyError, TypeError):
        return None
    return given if isinstance(given, str) else None


async def _receive(websocket: WebSocket, settings: Settings, mailbox: _Mailbox) -> None:
    """Read every message as it comes, so the client never waits on the server's analysis."""
    min_gap_s = 1.0 / settings.stream_max_fps
    last_accepted = -math.inf
    seq = 0
    first = True
    while True:
        message = await _next_message(websocket, settings)
        # A client configured with a key sends it whether or not this service has keys (as an HTTP client sends
        # its header either way); a service without keys ignores it rather than closing the stream.
        if first and not settings.api_keys and _given_key(message) is not None:
            first = False
            continue
        first = False
        data = message.get("bytes")
        if not isinstance(data, bytes):
            raise _CloseStreamError(
                UNSUPPORTED_DATA, "expected a binary JPEG, PNG, WebP or BMP frame, got a text message"
            )
        arrived = time.perf_counter()
        if arrived - last_accepted < min_gap_s:
            mailbox.over_rate += 1
        else:
            last_accepted = arrived
            mailbox.put(_Frame(seq, data, arrived))
        seq += 1


async def _process(websocket: WebSocket, pipeline: Pipeline, mailbox: _Mailbox, opened: float) -> None:
    """The newest frame -> pipeline -> tracker -> one result message; a frame that is no image, an error one."""
    tracker = Tracker()
    previous_s = -math.inf
    while True:
        frame = await mailbox.take()
        started = time.perf_counter()
        try:
            analysis = await pipeline.analyze(frame.data, Options())
        except DeepFERError as error:
            await websocket.send_text(StreamError(seq=frame.seq, error=ErrorBody.of(error)).model_dump_json())
            continue
        # Arrival times increase, but two frames may read the same clock tick; the tracker needs an increase.
        time_s = max(frame.arrived - opened, previous_s + 1e-6)
        previous_s = time_s
        detections = [
            Detection(box=(float(x), float(y), float(w), float(h)), probabilities=face.probabilities)
            for face in analysis.faces
            for x, y, w, h in [face.box]
        ]
        tracked = tracker.update(time_s, detections)
        done = time.perf_counter()
        result = StreamResult(
            seq=frame.seq,
            time_s=round(time_s, 6),
            faces=[StreamFace.of(face, track) for face, track in zip(analysis.faces, tracked, strict=True)],
            dropped=StreamDropped(stale=mailbox.stale, over_rate=mailbox.over_rate),
            timing=StreamTiming(
                queued_ms=round((started - frame.arrived) * 1000, 3),
                analysis_ms=round((done - started) * 1000, 3),
                total_ms=round((time.perf_counter() - frame.arrived) * 1000, 3),
            ),
        )
        await websocket.send_text(result.model_dump_json())
