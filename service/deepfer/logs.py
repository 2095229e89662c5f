"""Structured JSON logs on stderr: every logger (ours, uvicorn's) and what native libraries print on fd 2.

Used by ``deepfer serve``; nothing here knows about HTTP (the access line is written by ``http.middleware``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

native_log = logging.getLogger("deepfer.native")

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
