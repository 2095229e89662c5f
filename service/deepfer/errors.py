"""Every failure the service reports, as types: a stable ``code`` and the HTTP ``status`` it stands for.

Stages raise these; ``deepfer.server.errors`` turns each into its status and ``{"error": {"code", "message"}}``
in one place, so routes never build error JSON, no stage imports the web stack, and a new failure mode is one
class here. This module imports nothing but the standard library.

    DeepFERError(code, status)                      request-time, answered as JSON
      BadRequest          400 bad_request           malformed JSON, missing file field, bad option
        EmptyBody         400 empty_body            no bytes in the body or in the file
        InvalidBase64     400 invalid_base64        JSON "image" is not base64
        BadImage          400 bad_image             not an image, truncated or corrupt
      Unauthorized        401 unauthorized          API keys configured and none/wrong given
      Forbidden           403 forbidden             an admin route while no admin token is configured
        OriginNotAllowed  403 origin_not_allowed    a browser page of another site opening WS /stream
      TooLarge            413 too_large             upload over max_upload_bytes (checked while streaming)
        TooManyPixels     413 too_many_pixels       width x height over max_pixels (from the header)
        TooManyScans      413 too_many_scans        a JPEG with more scans than any encoder writes, or
                                                    pixels x scans over max_pixel_scans (a CPU bomb)
        TooMuchImageData  413 too_much_image_data   a PNG whose data inflates past what its header holds (a
                                                    decompression bomb: libpng would inflate all of it)
        TooManyFiles      413 too_many_files        more than max_batch_files in a batch
        TooManyFields     413 too_many_fields       more multipart parts besides the files than max_form_fields
      UnsupportedMediaType 415 unsupported_media_type  request content type is not multipart or JSON
        UnsupportedFormat 415 unsupported_format    an image, but not JPEG/PNG/WebP/BMP
      Overloaded          503 overloaded            inference queue full (+ Retry-After)
        WorkerLost        503 worker_lost           the image worker process holding it died; retry
      RequestTimeout      504 timeout               request_timeout_s exceeded
      ModelRejected       422 model_rejected        a reload's new model file fails to load; the old one serves on

    ModelLoadError                                  startup only: missing, corrupt or contract-breaking model

The web layer adds its own codes to the same envelope (``deepfer.server.errors`` lists them).
"""

from __future__ import annotations

from typing import ClassVar


class DeepFERError(Exception):
    """A request the service refuses, with a stable machine-readable ``code`` and the HTTP ``status``."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(DeepFERError):
    code = "bad_request"
    status = 400


class EmptyBody(BadRequest):
    code = "empty_body"


class InvalidBase64(BadRequest):
    code = "invalid_base64"


class BadImage(BadRequest):
    code = "bad_image"


class Unauthorized(DeepFERError):
    code = "unauthorized"
    status = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="deepfer"'}


class Forbidden(DeepFERError):
    code = "forbidden"
    status = 403


class OriginNotAllowed(Forbidden):
    code = "origin_not_allowed"


class TooLarge(DeepFERError):
    code = "too_large"
    status = 413


class TooManyPixels(TooLarge):
    code = "too_many_pixels"


class TooManyScans(TooLarge):
    code = "too_many_scans"


class TooMuchImageData(TooLarge):
    code = "too_much_image_data"


class TooManyFiles(TooLarge):
    code = "too_many_files"


class TooManyFields(TooLarge):
    code = "too_many_fields"


class UnsupportedMediaType(DeepFERError):
    code = "unsupported_media_type"
    status = 415


class UnsupportedFormat(UnsupportedMediaType):
    code = "unsupported_format"


class Overloaded(DeepFERError):
    """The bounded queue is full: shedding load now keeps latency bounded for the requests already admitted."""

    code = "overloaded"
    status = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class WorkerLost(Overloaded):
    """An image worker process ended under this request (a crash, the OOM killer); a fresh one takes the retry."""

    code = "worker_lost"


class RequestTimeout(DeepFERError):
    code = "timeout"
    status = 504


class ModelRejected(DeepFERError):
    """A reload refused: the message says which file and why; the models already loaded keep serving."""

    code = "model_rejected"
    status = 422


class ModelLoadError(Exception):
    """A model cannot serve (missing, corrupt, breaks the contract): raised at startup, so the process exits."""
