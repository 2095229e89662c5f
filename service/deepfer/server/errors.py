"""The one place errors become HTTP answers: every ``DeepFERError`` and framework error -> ``{"error": {...}}``.

``deepfer.errors`` holds the domain tree (code, status); here each is answered with its status, headers and the
envelope of ``schemas.ErrorResponse``. Framework errors get the same envelope: unknown route 404 ``not_found``,
wrong method 405 ``method_not_allowed``, a query that fails validation 422 ``invalid_request``. Anything
unexpected becomes 500 ``internal`` in ``middleware.RequestMiddleware`` (logged with its traceback, never echoed
to the caller), and a request the drain after SIGTERM ran out of time for 503 ``shutting_down`` (there too); a
refused CORS preflight is 400 ``cors_refused`` (``app``). Connection-level refusals, answered
before any route runs, use the envelope too (``server``): 400 ``bad_request`` (a malformed request, a missing or
doubled Host), 408 ``header_timeout``, 431 ``headers_too_large``, 503 ``overloaded``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from deepfer.errors import DeepFERError
from deepfer.wire import ErrorResponse

#: The error answers the routes declare in the OpenAPI document, by status (what each status means here).
DECLARED: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "empty body, invalid base64 or JSON, not an image, truncated or corrupt image",
        401: "missing or invalid API key (only when DEEPFER_API_KEYS is set)",
        413: "upload over max_upload_bytes, image over max_pixels, or too many files or form fields",
        415: "content type not multipart, JSON or an image, or an image format other than JPEG/PNG/WebP/BMP",
        422: "an option out of range",
        503: "overloaded: retry after the Retry-After header's seconds",
        504: "the request took longer than request_timeout_s",
    }.items()
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorResponse.of(code, message).model_dump(), status_code=status, headers=headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type"}


def _describe(error: Exception) -> tuple[int, str, str, dict[str, str]]:
    """status, code, message and headers of the answer to any error the handlers receive."""
    if isinstance(error, DeepFERError):
        return error.status, error.code, error.message, error.headers()
    if isinstance(error, RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item.get('msg', '')}" for item in error.errors()
        )
        return 422, "invalid_request", problems or "invalid request", {}
    assert isinstance(error, HTTPException)
    code = _HTTP_CODES.get(error.status_code, "http_error")
    return error.status_code, code, str(error.detail), dict(error.headers or {})


def install_error_handlers(app: FastAPI, on_error: Callable[[str], None] | None = None) -> None:
    """Map every error type to the one envelope, and report each answer's code to ``on_error`` (metrics)."""
    count = on_error or (lambda _: None)

    async def answer(_: Request, error: Exception) -> JSONResponse:
        status, code, message, headers = _describe(error)
        count(code)
        return error_response(status, code, message, headers)

    # Starlette picks the handler by the exception's MRO, so subclasses are covered.
    for kind in (DeepFERError, HTTPException, RequestValidationError):
        app.add_exception_handler(kind, answer)
