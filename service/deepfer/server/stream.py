"""``WS /stream``: live frames in, exactly one JSON answer per frame out, in order; one ``Tracker`` per connection.

The protocol, one connection per camera::

    client                                      server
    open ws://host/stream                 ->    403 origin_not_allowed (JSON) for a browser page whose Origin is
                                                neither this service's own nor in cors_origins; else accept
    text {"api_key": "<key>"}             ->    first message when the service has API keys (ignored without),
                                                within stream_auth_timeout_s
                                          <-    close 1013 when stream_max_connections streams are open
                                          <-    {"type": "ready", "limits": {...}, "model": {...}}
    binary JPEG/PNG/WebP/BMP frame        ->    one answer per frame, in frame order, one of:
                                          <-    {"type": "result", "seq", "time_s", "faces", "dropped", "timing"}
                                          <-    {"type": "error", "seq", "error": {"code", "message"}}: that frame
                                                was no image; the stream goes on
                                          <-    {"type": "dropped", "seq", "reason"}: not analysed, because it was
                                                over the frame budget ("rate"), a newer frame came before the
                                                server got to it ("superseded"), or the service was overloaded
                                                ("busy"); the stream goes on

Close codes, each with a reason and one log line: 4401 a wrong key; 4408 no key within ``stream_auth_timeout_s``,
or no message for ``stream_idle_timeout_s``; 1003 a binary frame where the key was expected or a text message
where a frame was; 1008 a first message that is not ``{"api_key": "..."}`` (malformed, or JSON nested too
deep), or pings faster than their pongs are read (``http.server``); 1007 a text message that is not UTF-8
(``http.server``); 1009 a message over ``stream_max_message_bytes`` (uvicorn's ``ws_max_size``); 1013 too many
streams. Each ends only that stream: the server serves on.

Why the key is the first message: a browser cannot set headers on a WebSocket. A key in the URL would land in
access logs, proxy logs and browser history. ``Sec-WebSocket-Protocol`` is a header too, one proxies log, and
it only carries token characters. A first message is sent by any client, travels inside the (TLS) stream, and
is never logged. A socket takes a stream slot only once its key is accepted, so sockets that never send one
cannot lock keyed clients out; they live ``stream_auth_timeout_s`` and count as connections (max_connections).
Why the Origin check: a browser sends any site's page's WebSocket with the user's ambient access (cookies, a
network the service trusts); non-browser clients send no Origin and are not asked for one.

Every frame is answered, so a client that sends a frame and waits for its answer never waits in vain. Latest
frame wins: a receiver task reads every message at once, answers a frame over the frame budget (a token bucket
of ``stream_burst_frames``, refilled at ``stream_max_fps``) "rate", and puts the others in a one-frame mailbox,
where a newer frame supersedes the waiting one; a processor task takes the newest frame, analyses it with the
pipeline of ``/predict`` (so the same decode limits, batcher and models) and runs the tracker. Each frame's
answer has a slot in an outbox, in frame order; a writer task sends them as they are filled. The outbox holds
at most ``_MAX_UNSENT_ANSWERS``: a client that sends and never reads is no longer read either (TCP pushes back),
so memory per stream is two frames and that many small answers. The tracker's clock is the frame's arrival time,
since a live stream has no container time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocketDisconnect

from deepfer.engine import answers
from deepfer.engine.answers import model_summary
from deepfer.engine.capacity import Slots
from deepfer.engine.pipeline import FaceResult, Options, Pipeline
from deepfer.errors import DeepFERError, OriginNotAllowed, Overloaded
from deepfer.server.dependencies import key_matches
from deepfer.server.errors import error_response
from deepfer.server.state import service_state
from deepfer.settings import Settings
from deepfer.tracking.tracker import Sighting, TrackedFace, Tracker
from deepfer.wire import (
    DropReason,
    ErrorBody,
    StreamDropped,
    StreamError,
    StreamFace,
    StreamFrameDropped,
    StreamLimits,
    StreamReady,
    StreamResult,
    StreamTiming,
)

UNAUTHORIZED: Final = 4401
TIMEOUT: Final = 4408
UNSUPPORTED_DATA: Final = 1003  # RFC 6455: a data type the endpoint cannot accept
POLICY_VIOLATION: Final = 1008  # RFC 6455: a message against the protocol, when no other code fits
TRY_AGAIN_LATER: Final = 1013
# Answers waiting to be sent: what one analysis lets pile up from a client sending 1,000 frames/s while it
# reads (50 ms here), with room; past it the server stops reading the client until it reads its answers.
_MAX_UNSENT_ANSWERS: Final = 64

log = logging.getLogger("deepfer")
stream_router = APIRouter()

_Answer = StreamResult | StreamError | StreamFrameDropped


class _CloseStreamError(Exception):
    """End this stream with ``code`` and ``reason`` (sent to the client in the close frame)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _KeyMessage(BaseModel):
    """The first message on a keyed service; pydantic's parser bounds nesting, where ``json`` recursed."""

    api_key: str


@dataclass(frozen=True)
class _Frame:
    seq: int
    data: bytes
    arrived: float  # time.perf_counter() when the message was read
    answer: asyncio.Future[_Answer]  # its slot in the outbox


class _Counts:
    """Frames dropped so far on this stream, by reason: each answered at once, and reported in every result."""

    def __init__(self) -> None:
        self._dropped = Counter[DropReason]()

    def drop(self, frame: _Frame, reason: DropReason) -> None:
        self._dropped[reason] += 1
        frame.answer.set_result(StreamFrameDropped(seq=frame.seq, reason=reason))

    def report(self) -> StreamDropped:
        dropped = self._dropped
        return StreamDropped(stale=dropped["superseded"], over_rate=dropped["rate"], busy=dropped["busy"])


class _TokenBucket:
    """``capacity`` frames at once, refilled at ``rate_per_s``: a camera's jitter (two frames close together, then
    a gap) costs nothing, while a sender faster than the rate on average loses the excess."""

    def __init__(self, rate_per_s: float, capacity: int, now: float) -> None:
        self._rate_per_s = rate_per_s
        self._capacity = float(capacity)
        self._tokens = float(capacity)
        self._updated = now

    def take(self, now: float) -> bool:
        """Spend a token if there is one."""
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate_per_s)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class _Mailbox:
    """One frame slot: ``put`` supersedes the waiting frame (answering it), ``take`` waits for one."""

    def __init__(self, counts: _Counts) -> None:
        self._frame: _Frame | None = None
        self._ready = asyncio.Event()
        self._counts = counts

    def put(self, frame: _Frame) -> None:
        if self._frame is not None:
            self._counts.drop(self._frame, "superseded")
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
    service = service_state(websocket.app)
    settings, pipeline = service.settings, service.pipeline
    if not _origin_allowed(websocket, settings):
        refusal = OriginNotAllowed(
            f"a page from {websocket.headers['origin']} may not open this stream: the service's own origin and "
            "DEEPFER_CORS_ORIGINS may"
        )
        log.info("WebSocket /stream refused: %s", refusal.message)
        await websocket.send_denial_response(error_response(refusal.status, refusal.code, refusal.message))
        return
    await websocket.accept()
    close: _CloseStreamError | None = None
    try:
        if settings.api_keys:
            await _authenticate(websocket, settings)
        with _stream_slot(service.streams):
            await _serve(websocket, settings, pipeline)
    except _CloseStreamError as error:
        close = error
    except WebSocketDisconnect:
        pass
    if close is not None:
        client = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else "?"
        log.info("WebSocket %s closed with %d: %s", client, close.code, close.reason)
        await websocket.close(close.code, close.reason)


def _origin_allowed(websocket: WebSocket, settings: Settings) -> bool:
    """No Origin (not a browser), the service's own (the Host the page asked for), or one of ``cors_origins``."""
    origin = websocket.headers.get("origin")
    if origin is None or origin in settings.cors_origins or "*" in settings.cors_origins:
        return True
    own = websocket.headers.get("host", "").lower()
    return bool(own) and urlsplit(origin).netloc.lower() == own


@contextmanager
def _stream_slot(streams: Slots) -> Iterator[None]:
    """One of ``stream_max_connections``, taken by an authenticated stream only."""
    try:
        streams.take()
    except Overloaded as full:
        raise _CloseStreamError(TRY_AGAIN_LATER, full.message) from None
    try:
        yield
    finally:
        # Freed before the close frame goes out, so a client that reconnects on seeing it finds the slot free.
        streams.give_back()


async def _serve(websocket: WebSocket, settings: Settings, pipeline: Pipeline) -> None:
    limits = StreamLimits(
        max_message_bytes=settings.stream_max_message_bytes,
        max_fps=settings.stream_max_fps,
        burst_frames=settings.stream_burst_frames,
        idle_timeout_s=settings.stream_idle_timeout_s,
    )
    ready = StreamReady(limits=limits, model=model_summary(pipeline.model))
    await websocket.send_text(ready.model_dump_json())
    counts = _Counts()
    mailbox, outbox = _Mailbox(counts), asyncio.Queue[asyncio.Future[_Answer]](_MAX_UNSENT_ANSWERS)
    tasks = {
        asyncio.create_task(_receive(websocket, settings, mailbox, outbox, counts)),
        asyncio.create_task(_process(pipeline, mailbox, counts, opened=time.perf_counter())),
        asyncio.create_task(_send(websocket, outbox)),
    }
    try:
        # The receiver ends the stream (disconnect, protocol error, idle); the writer only on a failed send.
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error


async def _next_message(websocket: WebSocket, timeout_s: float, why: str) -> dict[str, object]:
    try:
        message = await asyncio.wait_for(websocket.receive(), timeout_s)
    except TimeoutError:
        raise _CloseStreamError(TIMEOUT, f"{why} for {timeout_s:g} s") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(int(message.get("code", 1000)))
    return dict(message)


async def _authenticate(websocket: WebSocket, settings: Settings) -> None:
    """The first message must be the text ``{"api_key": "<key>"}``, within ``stream_auth_timeout_s``."""
    message = await _next_message(websocket, settings.stream_auth_timeout_s, "no API key")
    text = message.get("text")
    if not isinstance(text, str):
        raise _CloseStreamError(
            UNSUPPORTED_DATA, 'this service has API keys: send {"api_key": "<key>"} as the first message'
        )
    given = _given_key(text)
    if given is None:
        raise _CloseStreamError(POLICY_VIOLATION, 'the first message must be {"api_key": "<key>"}')
    if not key_matches(given, settings.api_keys):
        raise _CloseStreamError(UNAUTHORIZED, "invalid API key")


def _given_key(text: str) -> str | None:
    """The key of a ``{"api_key": "<key>"}`` message; None for any other text."""
    try:
        return _KeyMessage.model_validate_json(text).api_key
    except ValidationError:
        return None


async def _receive(
    websocket: WebSocket,
    settings: Settings,
    mailbox: _Mailbox,
    outbox: asyncio.Queue[asyncio.Future[_Answer]],
    counts: _Counts,
) -> None:
    """Read every message as it comes, so the client never waits on the server's analysis."""
    loop = asyncio.get_running_loop()
    budget = _TokenBucket(settings.stream_max_fps, settings.stream_burst_frames, time.perf_counter())
    seq = 0
    first = True
    while True:
        message = await _next_message(websocket, settings.stream_idle_timeout_s, "no message")
        text = message.get("text")
        # A client configured with a key sends it whether or not this service has keys (as an HTTP client sends
        # its header either way); a service without keys ignores it rather than closing the stream.
        if first and not settings.api_keys and isinstance(text, str) and _given_key(text) is not None:
            first = False
            continue
        first = False
        data = message.get("bytes")
        if not isinstance(data, bytes):
            raise _CloseStreamError(
                UNSUPPORTED_DATA, "expected a binary JPEG, PNG, WebP or BMP frame, got a text message"
            )
        arrived = time.perf_counter()
        frame = _Frame(seq, data, arrived, loop.create_future())
        seq += 1
        await outbox.put(frame.answer)  # the answer's place in line, before it can be given
        if budget.take(arrived):
            mailbox.put(frame)
        else:
            counts.drop(frame, "rate")


async def _send(websocket: WebSocket, outbox: asyncio.Queue[asyncio.Future[_Answer]]) -> None:
    """Each frame's answer, in frame order, as soon as it (and every one before it) is given."""
    while True:
        answer = await (await outbox.get())
        await websocket.send_text(answer.model_dump_json())


async def _process(pipeline: Pipeline, mailbox: _Mailbox, counts: _Counts, opened: float) -> None:
    """The newest frame -> pipeline -> tracker -> its answer: a result, an error for no image, dropped when busy."""
    tracker = Tracker()
    previous_s = -math.inf
    while True:
        frame = await mailbox.take()
        started = time.perf_counter()
        try:
            analysis = await pipeline.analyze(frame.data, Options())
        except Overloaded:
            counts.drop(frame, "busy")
            continue
        except DeepFERError as error:
            frame.answer.set_result(StreamError(seq=frame.seq, error=ErrorBody.of(error)))
            continue
        # Arrival times increase, but two frames may read the same clock tick; the tracker needs an increase.
        time_s = max(frame.arrived - opened, previous_s + 1e-6)
        previous_s = time_s
        detections = [
            Sighting(box=(float(x), float(y), float(w), float(h)), probabilities=face.probabilities)
            for face in analysis.faces
            for x, y, w, h in [face.box]
        ]
        tracked = tracker.update(time_s, detections)
        done = time.perf_counter()
        frame.answer.set_result(
            StreamResult(
                seq=frame.seq,
                time_s=round(time_s, 6),
                faces=[_stream_face(face, track) for face, track in zip(analysis.faces, tracked, strict=True)],
                dropped=counts.report(),
                timing=StreamTiming(
                    queued_ms=round((started - frame.arrived) * 1000, 3),
                    analysis_ms=round((done - started) * 1000, 3),
                    total_ms=round((time.perf_counter() - frame.arrived) * 1000, 3),
                ),
            )
        )


def _stream_face(result: FaceResult, tracked: TrackedFace) -> StreamFace:
    """The one place a pipeline face and its track become the stream's face."""
    return StreamFace(
        **answers.face(result).model_dump(),
        track_id=tracked.track_id,
        smoothed_emotion=tracked.smoothed_emotion,
        smoothed=answers.probabilities(tracked.smoothed),
    )
