"""The request middleware: request id, access log line, request metrics, and the last-resort 500.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, which buffers responses and costs a task per request.
The access line records method, route, status, duration, body size and client address: never a body, a file
name or a query value, so no image or personal data reaches the logs.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deepfer.metrics import Metrics
from deepfer.server.errors import error_response

access_log = logging.getLogger("deepfer.access")
error_log = logging.getLogger("deepfer.errors")

REQUEST_ID_HEADER = "x-request-id"
# The status recorded (never sent) for a request its client abandoned, nginx's 499, so 5xx means a server fault.
CLIENT_CLOSED = 499
# Key in the request's scope state under which the connection (``server.LimitedProtocol``) leaves (status, code,
# message) when the request's own body was malformed: the application saw a disconnect, the client got that status.
MALFORMED = "deepfer.malformed"
# A caller's id is echoed only when it is short and plain, so it cannot inject text into log lines or headers.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _declares_body(headers: dict[bytes, bytes]) -> bool:
    """Whether the request says a body follows: a non-zero Content-Length or a Transfer-Encoding."""
    length = headers.get(b"content-length", b"0").strip()
    return b"transfer-encoding" in headers or length not in (b"", b"0")


class RequestMiddleware:
    """Outermost layer: gives every request an id, times it, logs it, counts it, and turns a crash into a 500."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, log_requests: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        # A body still on its way when the answer starts: the answer closes the connection (see ``send_with_id``).
        body_pending = _declares_body(headers)
        given = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if _VALID_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500
        started = False

        async def receive_tracked() -> Message:
            nonlocal body_pending
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_pending = False
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                extra = [(b"x-request-id", request_id.encode())]
                if body_pending:
                    # Answered before its body was read (a 413 from Content-Length, a 401, a 503): keeping the
                    # connection would make uvicorn read and drop the rest of the body, with no timeout, so a
                    # client trickling bytes would hold the connection forever. Closing it is RFC 9110's advice.
                    extra.append((b"connection", b"close"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive_tracked, send_with_id)
        except ClientDisconnect:  # the caller gave up mid-upload: its doing, not a server fault, and nobody to answer
            refusal = scope["state"].get(MALFORMED)
            status = refusal[0] if refusal else CLIENT_CLOSED
        except asyncio.CancelledError:
            # Only the server cancels a request: uvicorn, for what outlives the drain's graceful_shutdown_s. Left to
            # it, the client got a plain-text 500; a 503 in the envelope says to retry, on another replica. The task
            # ends here, answered: nothing awaits it, and uvicorn would log the cancellation as a crash.
            if not started:
                message = "the server shut down before this request was done; retry"
                response = error_response(503, "shutting_down", message, {"Retry-After": "1"})
                await response(scope, receive, send_with_id)
            self.metrics.errors.labels("shutting_down").inc()
        except Exception:  # the one last-resort boundary: log with traceback, answer the envelope, keep serving
            error_log.exception("unhandled error", extra={"request_id": request_id, "path": scope["path"]})
            self.metrics.errors.labels("internal").inc()
            if not started:
                response = error_response(500, "internal", f"internal error; quote request id {request_id}")
                await response(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(route, status, seconds)
            if self.log_requests or status == CLIENT_CLOSED:  # one info line for an abandoned request, always
                access_log.info(
                    "client closed the request" if status == CLIENT_CLOSED else "request",
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "route": route,
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                        "request_bytes": int(headers.get(b"content-length", b"0") or 0),
                        "client": (scope.get("client") or ("", 0))[0],
                    },
                )
