"""Request body -> image bytes, held in memory only and cut off the moment a limit is crossed.

Starlette's own form parser spools files over 1 MB to a temporary file and reads the whole body before any
check; we parse multipart ourselves with python-multipart's streaming parser instead, so that an image is never
written to disk and an oversized upload is refused after ``max_upload_bytes`` have arrived, not after all of it.
Parts are counted as their headers end: each costs the parser Python work on the event loop whatever its size (a
9 MB body of a million empty parts: 1.2 s; 10 MB of 190,000 one-byte fields: 2 s, no other request served
meanwhile; 2-core AVX-512 host, 2026-12-03), so the file beyond ``max_files`` or the field beyond
``max_fields`` stops the parse there.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from fastapi import Request
from pydantic import ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from deepfer.errors import (
    BadRequest,
    EmptyBody,
    InvalidBase64,
    TooLarge,
    TooManyFields,
    TooManyFiles,
    UnsupportedMediaType,
)
from deepfer.wire import PredictJSONRequest

# Room for multipart headers and boundaries, and for JSON punctuation, on top of the image bytes themselves.
_ENVELOPE_BYTES = 16 * 1024
# Text fields in a multipart body are not images; anything beyond this is not a legitimate request.
_MAX_TEXT_FIELD_BYTES = 4 * 1024


@dataclass(frozen=True)
class Upload:
    """One image as sent: the bytes and the client's file name (for the batch response only; never logged)."""

    data: bytes
    filename: str | None = None

    def image(self) -> bytes:
        """The bytes, or ``EmptyBody``: checked per file, so an empty file in a batch is that file's error."""
        if not self.data:
            raise EmptyBody("the uploaded image is empty (0 bytes)")
        return self.data


async def read_images(
    request: Request, *, field_name: str, max_upload_bytes: int, max_files: int, max_fields: int
) -> list[Upload]:
    """Multipart (``field_name`` parts, at most ``max_fields`` others), JSON (``{"image": base64}``) or, for a
    single image, the raw file (``image/*``, ``application/octet-stream``) -> 1..max_files uploads, or a 4xx."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type == b"multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise BadRequest("multipart body without a boundary parameter")
        uploads = await _read_multipart(
            request, boundary, field_name, _PartLimits(max_upload_bytes, max_files, max_fields)
        )
    elif content_type == b"application/json":
        uploads = [await _read_json(request, max_upload_bytes)]
    elif max_files == 1 and (content_type.startswith(b"image/") or content_type == b"application/octet-stream"):
        uploads = [await _read_raw(request, max_upload_bytes)]
    else:
        raw = ", or the image itself as image/* or application/octet-stream" if max_files == 1 else ""
        raise UnsupportedMediaType(
            f"content type {content_type.decode(errors='replace') or '(none)'} is not accepted; send "
            f'multipart/form-data with field {field_name!r}, application/json {{"image": base64}}{raw}'
        )
    return uploads


def _over(limit: int, max_upload_bytes: int) -> str:
    """How a size refusal names its limit: the bytes, and the setting (and variable) that raises it."""
    return f"the limit of {limit} bytes (from max_upload_bytes={max_upload_bytes}, DEEPFER_MAX_UPLOAD_BYTES)"


def _check_declared_length(request: Request, limit: int, max_upload_bytes: int) -> None:
    """Refuse before reading when the client announces a body larger than we would ever accept."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body of {declared} bytes exceeds {_over(limit, max_upload_bytes)}")


async def _read_raw(request: Request, max_upload_bytes: int) -> Upload:
    """The body is the image file itself (``curl --data-binary @face.jpg -H 'Content-Type: image/jpeg'``), as many
    clients and other vision APIs send it; the format is read from the bytes, never from the content type."""
    _check_declared_length(request, max_upload_bytes, max_upload_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_upload_bytes:
            raise TooLarge(f"image body exceeds {_over(max_upload_bytes, max_upload_bytes)}")
    return Upload(bytes(body))


@dataclass(frozen=True)
class _PartLimits:
    max_upload_bytes: int
    max_files: int  # parts named field_name
    max_fields: int  # every other part


@dataclass
class _PartState:
    """Mutable state of the streaming multipart parse; one per request."""

    field_name: str
    limits: _PartLimits
    uploads: list[Upload] = field(default_factory=list)
    fields: int = 0
    header_name: bytes = b""
    header_value: bytes = b""
    disposition: bytes = b""
    is_ours: bool = False
    limit: int = 0
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0

    def begin_part(self) -> None:
        self.disposition, self.chunks, self.size = b"", [], 0

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def header_value_part(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name, self.header_value = b"", b""

    def headers_finished(self) -> None:
        """Count the part before any of its data is read: a file beyond ``max_files``, a field beyond
        ``max_fields``, is refused here."""
        disposition = parse_options_header(self.disposition)[1]
        self.is_ours = disposition.get(b"name") == self.field_name.encode()
        if self.is_ours and self.limits.max_files > 1 and b"filename" not in disposition:
            # A batch answers 200 with an error per bad file; a text field where files go is a malformed request.
            raise BadRequest(f"every {self.field_name!r} part must be a file (a filename in its Content-Disposition)")
        if self.is_ours and len(self.uploads) >= self.limits.max_files:
            setting = " (max_batch_files, DEEPFER_MAX_BATCH_FILES)" if self.limits.max_files > 1 else ""
            raise TooManyFiles(f"more than {self.limits.max_files} file(s) in field {self.field_name!r}{setting}")
        if not self.is_ours:
            self.fields += 1
            if self.fields > self.limits.max_fields:
                raise TooManyFields(
                    f"more than max_form_fields={self.limits.max_fields} multipart parts besides the "
                    f"{self.field_name!r} files (DEEPFER_MAX_FORM_FIELDS)"
                )
        self.limit = (
            self.limits.max_upload_bytes if self.is_ours or b"filename" in disposition else _MAX_TEXT_FIELD_BYTES
        )

    def part_data(self, data: bytes, start: int, end: int) -> None:
        """Keep the bytes of ``field_name`` parts; count (and cap) but drop everything else."""
        self.size += end - start
        if self.size > self.limit:
            if self.limit == _MAX_TEXT_FIELD_BYTES:
                raise TooLarge(f"a text field of the form exceeds {_MAX_TEXT_FIELD_BYTES} bytes")
            raise TooLarge(f"a file of the upload exceeds {_over(self.limit, self.limits.max_upload_bytes)}")
        if self.is_ours:
            self.chunks.append(data[start:end])

    def end_part(self) -> None:
        if not self.is_ours:
            return
        filename = parse_options_header(self.disposition)[1].get(b"filename")
        self.uploads.append(Upload(b"".join(self.chunks), filename.decode(errors="replace") if filename else None))


async def _read_multipart(request: Request, boundary: bytes, field_name: str, limits: _PartLimits) -> list[Upload]:
    limit = limits.max_files * (limits.max_upload_bytes + _ENVELOPE_BYTES)
    _check_declared_length(request, limit, limits.max_upload_bytes)
    state = _PartState(field_name, limits)
    received = 0
    try:  # the parser refuses a bad boundary (over 256 characters, say) when it is built
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": state.begin_part,
                "on_header_field": state.header_field,
                "on_header_value": state.header_value_part,
                "on_header_end": state.header_end,
                "on_headers_finished": state.headers_finished,
                "on_part_data": state.part_data,
                "on_part_end": state.end_part,
            },
        )
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise TooLarge(f"body exceeds {_over(limit, limits.max_upload_bytes)}")
            parser.write(chunk)
        parser.finalize()
    except FormParserError as error:
        raise BadRequest(f"malformed multipart body: {error}") from None
    if received == 0:
        raise EmptyBody("empty request body")
    if not state.uploads:
        raise BadRequest(f"no file in multipart field {field_name!r}")
    return state.uploads


async def _read_json(request: Request, max_upload_bytes: int) -> Upload:
    limit = (max_upload_bytes + 2) // 3 * 4 + _ENVELOPE_BYTES  # base64 grows data by 4/3
    _check_declared_length(request, limit, max_upload_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"JSON body exceeds {_over(limit, max_upload_bytes)}")
    if not body:
        raise EmptyBody("empty request body")
    # pydantic's own JSON parser, not json.loads: it bounds nesting depth and number length itself and reports both
    # as invalid JSON, where json.loads raises RecursionError or ValueError deep inside.
    try:
        payload = PredictJSONRequest.model_validate_json(body)
    except ValidationError as error:
        problem = error.errors(include_input=False)[0]
        if problem["type"] == "json_invalid":
            raise BadRequest(f"body is not valid JSON: {problem['msg']}") from None
        raise BadRequest(f'expected {{"image": "<base64>"}}: {problem["msg"]}') from None
    text = payload.image
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidBase64(f"'image' is not valid base64: {error}") from None
    if len(data) > max_upload_bytes:
        raise TooLarge(f"image of {len(data)} bytes exceeds {_over(max_upload_bytes, max_upload_bytes)}")
    return Upload(data)
