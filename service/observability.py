"""Structured JSON logs and the request middleware: request id, access log line, request metrics, last-resort 500.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, which buffers responses and costs a task per request.
The access line records method, route, status, duration, body size and client address: never a body, a file
name or a query value, so no image or personal data reaches the logs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_response
from service.metrics import Metrics

access_log = logging.getLogger("deepfer.access")
error_log = logging.getLogger("deepfer.errors")
native_log = logging.getLogger("deepfer.native")

REQUEST_ID_HEADER = "x-request-id"
# The status recorded (never sent) for a request its client abandoned, nginx's 499, so 5xx means a server fault.
CLIENT_CLOSED = 499
# A caller's id is echoed only when it is short and plain, so it cannot inject text into log lines or headers.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# color_message: uvicorn's ANSI-coloured duplicate of the message, noise in a JSON line.
_STANDARD_RECORD_FIELDS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, plus any ``extra={...}`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_RECORD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    """Send every logger (ours and uvicorn's) to stderr as JSON lines, native libraries' lines included."""
    handler = logging.StreamHandler(_relay_native_stderr())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def _relay_native_stderr() -> TextIO:
    """Make what C libraries write to file descriptor 2 (libjpeg's "Corrupt JPEG data: ..." warnings, libpng's)
    JSON records of logger ``deepfer.native``, one per line; returns the real stderr for the JSON handler.

    Those libraries print with fprintf(stderr) and offer no hook through OpenCV, so a raw line would land among the
    JSON logs and break every parser reading them. Descriptor 2 becomes a pipe read by a daemon thread; anything
    else written there (a Python traceback from a dying thread, say) becomes a record the same way.
    """
    real_stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    threading.Thread(target=_relay, args=(read_end,), name="deepfer-native-stderr", daemon=True).start()
    return real_stderr


def _relay(read_end: int) -> None:
    with os.fdopen(read_end, "rb") as lines:
        for line in lines:
            if text := line.decode(errors="replace").rstrip():
                native_log.warning(text)


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
        given = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if _VALID_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:  # the caller gave up mid-upload: its doing, not a server fault, and nobody to answer
            status = CLIENT_CLOSED
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
