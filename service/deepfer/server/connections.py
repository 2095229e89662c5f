"""uvicorn as the service runs it: limits for hostile connections, and a drain that load balancers can follow.

uvicorn's httptools protocol bounds neither the size nor the arrival time of request headers (a 64 MB header
was accepted, one trickled at 8 B/s held its connection for a minute) and holds any number of connections.
``LimitedProtocol`` adds the three limits from ``Settings``, each answered with the JSON error envelope and the
connection closed:

    max_header_bytes     431 headers_too_large   request line + headers, counted while they arrive
    header_timeout_s     408 header_timeout      from a request's first byte (or the connection's opening)
    max_connections      503 overloaded          a connection beyond the cap, refused before anything is read

and answers what the parser cannot use with 400 ``bad_request``, as RFC 9112 asks: a malformed request line,
header or chunked body, and an HTTP/1.1 request without a Host header or any request with two. A refusal is
answered in order: requests pipelined before the bad one get their own answers first (uvicorn wrote its 400 at
once, so their answers failed after it with a traceback and a 500 in the metrics). A request whose own body is
malformed ends for the application as a disconnect, recorded as its 400 (``middleware.MALFORMED``).

``LimitedWebSocketProtocol`` does the same for WebSockets (uvicorn's websockets sans-I/O protocol, whose
``ws_max_queue`` is not used by it): the websockets library answers every ping with a pong at once and uvicorn
writes it whatever the client reads, so a client that floods pings and reads nothing grew the process by
~190 MB; past ``stream_max_unsent_bytes`` waiting for the client the connection is failed with 1008. Invalid
UTF-8 in a text message is failed with 1007 and a reason, logged in one line (uvicorn logs a traceback). Data
messages need nothing more: uvicorn stops reading after each until the app takes it, and the app's sends wait
for the transport to drain.

``DrainingServer`` changes what SIGTERM does: ``/readyz`` turns 503 at once while the listener keeps serving for
``pre_drain_s`` (the time a Kubernetes endpoint update or a load balancer's health check needs to stop sending
traffic), then uvicorn drains in-flight requests for up to ``graceful_shutdown_s`` and the process exits 0. A
second SIGTERM, or SIGINT, shuts down at once as uvicorn does. With ``workers > 1`` uvicorn's supervisor runs its
own server in each child, so the pre-drain applies to single-process serving, which is how the shipped
container, Compose and Kubernetes configurations run (one process per replica).

The drain answers every request that reached the service before the listener closed, not only those already being
handled. uvicorn alone resets two kinds of connection whose client has sent a request: one still in the kernel's
accept queue (closing the listener resets it) and one accepted but not yet read (uvicorn closes it as idle), which
under load lost a request at SIGTERM. ``DrainingServer`` accepts the queued ones before closing the listener, and
``LimitedProtocol`` gives a connection whose request has not been read yet ``header_timeout_s`` to send it, then
answers it with ``connection: close``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from types import FrameType
from typing import Any, cast

import uvicorn
from fastapi import FastAPI
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from deepfer.server.middleware import MALFORMED
from deepfer.server.state import service_state
from deepfer.settings import Settings
from deepfer.wire import ErrorResponse

log = logging.getLogger("deepfer")
_LINGER_S = 1.0


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout_s: float
    max_connections: int
    retry_after_s: int


class _RefusedError(Exception):
    """Raised from a parser callback to stop parsing; uvicorn then calls ``send_400_response``."""


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header size and time limits and a connection cap."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._header_bytes = 0  # bytes received since the current request began, until its headers end
        self._in_headers = True
        self._header_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str, str] | None = None
        self._draining = False  # the server is shutting down: answer the request on its way, then close
        self._unanswered = 0  # requests parsed on this connection whose response has not been sent in full

    # uvicorn's own protocol narrows asyncio's BaseTransport to Transport here; this override keeps its signature.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._limits.max_connections:
            self._refuse(503, "overloaded", f"more than max_connections={self._limits.max_connections} connections")
            return
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:  # refused: nothing more is parsed, let alone run
            return
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        # Still in the headers after this chunk: they alone are what was counted, so refuse before buffering more.
        if self._in_headers and self._header_bytes > self._limits.max_header_bytes and self._refusal is None:
            self._refuse(431, "headers_too_large", self._too_large())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers, self._header_bytes = True, 0
        self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._stop_header_timer()
        # The chunk that ended the headers was counted with its body bytes; measure the parsed headers exactly.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self._limits.max_header_bytes:
            self._refusal = (431, "headers_too_large", self._too_large())
            raise _RefusedError
        if problem := self._host_problem():
            self._refusal = (400, "bad_request", problem)
            raise _RefusedError
        started = self.cycle
        super().on_headers_complete()
        if self.cycle is not started:  # a WebSocket upgrade creates none
            self._unanswered += 1
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_response_complete(self) -> None:
        self._unanswered -= 1
        super().on_response_complete()
        if self._refusal is not None and not self._unanswered:
            self._answer_refusal()

    def shutdown(self) -> None:
        """The drain's request to close: at once between requests, as uvicorn does, but not before a request
        whose first bytes may already be here (a fresh connection, or headers begun), which closing would reset.
        Such a connection stays open until its answer is sent (or, refused, its lingering close ends); the
        header timer bounds how long it may take to arrive."""
        self._draining = True
        if self._in_headers or self._refusal is not None:
            return
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, or to our refusal: the JSON envelope instead of text."""
        # uvicorn calls this inside its ``except HttpParserError``, whose text names the problem ("Invalid character
        # in chunk size"); its own ``msg`` is always "Invalid HTTP request received."
        problem = sys.exception() or msg
        self._refuse(*(self._refusal or (400, "bad_request", f"malformed HTTP request: {problem}")))

    def _host_problem(self) -> str | None:
        """RFC 9112 section 3.2: a server must answer 400 to an HTTP/1.1 request without Host, and to any with two
        (which host it names is then ambiguous, and a proxy in front may have picked the other)."""
        hosts = sum(name == b"host" for name, _ in self.headers)
        if hosts > 1:
            return f"{hosts} Host headers; a request names one host"
        if hosts == 0 and self.parser.get_http_version() == "1.1":
            return "an HTTP/1.1 request needs a Host header"
        return None

    def _too_large(self) -> str:
        return f"request headers exceed max_header_bytes={self._limits.max_header_bytes}"

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self._limits.header_timeout_s, self._header_timeout)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._in_headers and not self.transport.is_closing():
            self._refuse(408, "header_timeout", f"headers not received within {self._limits.header_timeout_s} s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Stop reading, and answer with the error envelope and close once the requests before are answered."""
        self._stop_header_timer()
        self._refusal = (status, code, message)
        self._end_malformed_request()
        if not self._unanswered:
            self._answer_refusal()

    def _end_malformed_request(self) -> None:
        """The request whose body the parser was reading is the bad one: it gets the refusal, not an answer of its
        own. Still queued behind a pipelined request, it is dropped; running, it sees a disconnect, and its sends
        go nowhere."""
        cycle = self.cycle
        if cycle is None or not cycle.more_body or cycle.response_complete:
            return
        self._unanswered -= 1
        queued = [entry for entry in self.pipeline if entry[0] is cycle]
        if queued:
            self.pipeline.remove(queued[0])
            return
        cycle.scope["state"][MALFORMED] = self._refusal
        cycle.disconnected = True
        cycle.message_event.set()

    def _answer_refusal(self) -> None:
        """The refusal's envelope, then a lingering close: the connection is not worth keeping."""
        assert self._refusal is not None
        if self.transport.is_closing():  # an answered request asked for "Connection: close"
            return
        status, code, message = self._refusal
        body = ErrorResponse.of(code, message).model_dump_json().encode()
        retry = f"retry-after: {self._limits.retry_after_s}\r\n" if status == 503 else ""
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{retry}connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        # A lingering close: closing with the client's bytes unread would send a reset, which can destroy the
        # answer in the client's buffers before it is read. Half-close, discard what still comes, close in 1 s.
        self.transport.write_eof()
        self.loop.call_later(_LINGER_S, self.transport.close)


class LimitedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol with a bound on what waits for the client, and a quiet 1007."""

    def __init__(self, *args: Any, max_unsent_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_unsent_bytes = max_unsent_bytes
        self._failed = False

    async def send(self, message: ASGISendEvent) -> None:
        # A send waiting for the buffer to drain when the connection was failed under the app: to the app, the
        # client has gone (uvicorn would raise "websocket.send after websocket.close" and log a traceback).
        await self.writable.wait()
        if self._failed:
            raise ClientDisconnected
        await super().send(message)

    def handle_ping(self) -> None:
        # The library has queued the pong already; what the transport still holds is what the client left unread.
        if self.transport.get_write_buffer_size() > self._max_unsent_bytes:
            unread = f"over {self._max_unsent_bytes} bytes unread"
            self._fail(1008, f"pings faster than their pongs are read ({unread})", read_on=False)
            return
        super().handle_ping()

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError as error:
                self.frames = []
                self._fail(1007, f"a text message that is not UTF-8 (byte {error.start})")
                return
        super().send_receive_event_to_app()

    def _fail(self, code: int, reason: str, *, read_on: bool = True) -> None:
        """Tell the app, send the close frame after what is already waiting, and linger: closing a socket with the
        client's bytes unread sends a reset, which destroys the close frame in the client's buffers before it is
        read. Half-close, and cut off a client that has not completed the close after the close timeout uvicorn
        gives every closing handshake. Meanwhile what the client sends is discarded (``read_on``, so a client
        that reads gets its close handshake), or not read at all: a flood then stalls in the client's buffers."""
        if self.close_sent or self.conn.state is not State.OPEN:
            return
        client = "{}:{}".format(*self.client) if self.client else "?"
        log.info("WebSocket %s closed with %d: %s", client, code, reason)
        self._failed = True
        self.conn.fail(code, reason)  # from here the library discards what the client sends
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.write_eof()
        if not read_on:
            # Paused behind uvicorn's back: it resumes reading when the app takes a message if it paused it.
            self.read_paused = False
            self.transport.pause_reading()
        elif self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)  # uvicorn closes on it


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` keywords of ``deepfer serve`` (and of the test servers, so they run the same limits)."""
    limits = ConnectionLimits(
        settings.max_header_bytes, settings.header_timeout_s, settings.max_connections, settings.retry_after_s
    )
    return {
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "http": partial(LimitedProtocol, limits=limits),
        "log_config": None,
        "access_log": False,
        # WS /stream: a larger message is refused by the websockets layer as it arrives (close 1009).
        "ws": partial(LimitedWebSocketProtocol, max_unsent_bytes=settings.stream_max_unsent_bytes),
        "ws_max_size": settings.stream_max_message_bytes,
        # Rounded up, not down: uvicorn takes whole seconds, and int(0.5) = 0 would cancel every in-flight
        # request the moment the drain begins instead of letting it finish.
        "timeout_graceful_shutdown": math.ceil(settings.graceful_shutdown_s),
    }


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a pre-drain on SIGTERM (see the module docstring) and exit status 0 after it."""

    def __init__(self, config: uvicorn.Config, *, app: FastAPI, pre_drain_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._pre_drain_s = pre_drain_s
        self._drain_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._drain_at is not None:
            super().handle_exit(sig, frame)
            return
        # Not recorded as a captured signal: uvicorn would re-raise it after shutdown, and exit 143 says "killed".
        service_state(self._app).draining = True
        self._drain_at = time.monotonic() + self._pre_drain_s
        log.info("SIGTERM: readiness off, serving %.1f s more before draining", self._pre_drain_s)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, after taking in the connections waiting in the listeners' accept queues: closing a
        listener resets those, though their clients connected (and sent their requests) before the drain."""
        queued = [connection for server in self.servers for connection in _accept_queued(server)]
        for server in self.servers:
            server.close()
        loop = asyncio.get_running_loop()
        # uvicorn types the class as a bare asyncio.Protocol; its constructor takes these keywords.
        protocol_class = cast(Callable[..., asyncio.Protocol], self.config.http_protocol_class)
        protocol = partial(
            protocol_class,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        for connection in queued:
            await loop.connect_accepted_socket(protocol, connection)
        log.info(
            "draining %d connections, %d of them from the accept queue", len(self.server_state.connections), len(queued)
        )
        await super().shutdown(sockets)
        await self._close_what_outlived_the_drain()

    async def _close_what_outlived_the_drain(self) -> None:
        """uvicorn returns from a drain that ran out of ``graceful_shutdown_s`` with those connections still open
        (a silent preconnect, a stream whose client never answers the close). uvloop then closes their transports
        inside ``loop.close()``, where a client's FIN arriving at that moment fails it with EBUSY and a
        traceback; closed here, they are gone while the loop still runs."""
        left = list(self.server_state.connections)
        if not left:
            return
        log.warning("closing %d connections still open after the drain", len(left))
        for connection in left:
            connection.transport.abort()
        await asyncio.sleep(0)  # the transports' connection_lost callbacks run on this turn of the loop

    async def on_tick(self, counter: int) -> bool:
        if self._drain_at is not None and time.monotonic() >= self._drain_at:
            self.should_exit = True
        return await super().on_tick(counter)


def _accept_queued(server: asyncio.Server) -> list[socket.socket]:
    """Every connection waiting in ``server``'s accept queues now, accepted without blocking."""
    accepted = []
    for listener in server.sockets:
        with listener.dup() as duplicate:  # the same queue; the loop's own socket object is private
            duplicate.setblocking(False)
            while True:
                try:
                    connection, _ = duplicate.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    break
                connection.setblocking(False)
                accepted.append(connection)
    return accepted
