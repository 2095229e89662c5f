"""``POST /predict`` and ``POST /predict/batch``, kept thin: read the upload -> ``Pipeline.analyze`` -> answer.

Errors are raised as ``deepfer.errors`` types and answered by ``deepfer.server.errors``, never built here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from deepfer.engine.answers import predict_response
from deepfer.engine.pipeline import Options
from deepfer.errors import DeepFERError, RequestTimeout
from deepfer.server.dependencies import State, predict_options, require_api_key
from deepfer.server.errors import DECLARED
from deepfer.server.upload import Upload, read_images
from deepfer.settings import Settings
from deepfer.wire import BatchItem, BatchResponse, ErrorBody, PredictJSONRequest, PredictResponse

router = APIRouter(dependencies=[Depends(require_api_key)], responses={401: DECLARED[401]}, tags=["prediction"])
# The prediction routes' own errors; 401 is declared once, on the router that checks the key.
_PREDICT_ERRORS = {status: body for status, body in DECLARED.items() if status != 401}
Choices = Annotated[Options, Depends(predict_options)]

_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/json": {"schema": PredictJSONRequest.model_json_schema()},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1}
                    },
                    "required": ["files"],
                }
            }
        },
    }
}


@asynccontextmanager
async def _deadline(settings: Settings) -> AsyncIterator[None]:
    """Bound the whole request, upload included, so a slow client or a stuck stage cannot hold a slot forever."""
    try:
        async with asyncio.timeout(settings.request_timeout_s):
            yield
    except TimeoutError:
        raise RequestTimeout(f"request took longer than request_timeout_s={settings.request_timeout_s}") from None


async def _uploads(request: Request, settings: Settings, *, field_name: str, max_files: int) -> list[Upload]:
    return await read_images(
        request,
        field_name=field_name,
        max_upload_bytes=settings.max_upload_bytes,
        max_files=max_files,
        max_fields=settings.max_form_fields,
    )


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=_PREDICT_ERRORS,
    openapi_extra=_IMAGE_BODY,
    operation_id="predict",
    summary="Emotions of every face in one image (multipart field 'file', JSON {'image': base64}, or the raw file)",
)
async def predict(request: Request, options: Choices, service: State) -> PredictResponse:
    settings, pipeline = service.settings, service.pipeline
    async with _deadline(settings):
        (upload,) = await _uploads(request, settings, field_name="file", max_files=1)
        analysis = await pipeline.analyze(upload.image(), options)
    return predict_response(analysis)


@router.post(
    "/predict/batch",
    response_model=BatchResponse,
    responses=_PREDICT_ERRORS,
    openapi_extra=_BATCH_BODY,
    operation_id="predict_batch",
    summary="Several images (multipart field 'files'); a bad file gives an error entry, not a failed batch",
)
async def predict_batch(request: Request, options: Choices, service: State) -> BatchResponse:
    settings, pipeline = service.settings, service.pipeline

    async def one(index: int, upload: Upload) -> BatchItem:
        try:
            analysis = await pipeline.analyze(upload.image(), options)
        except DeepFERError as error:
            service.metrics.errors.labels(error.code).inc()
            return BatchItem(index=index, filename=upload.filename, error=ErrorBody.of(error))
        return BatchItem(index=index, filename=upload.filename, result=predict_response(analysis))

    async with _deadline(settings):
        uploads = await _uploads(request, settings, field_name="files", max_files=settings.max_batch_files)
        # Concurrently, so the faces of all files meet in the same classifier batches.
        items = await asyncio.gather(*(one(index, upload) for index, upload in enumerate(uploads)))
    return BatchResponse(results=list(items))
