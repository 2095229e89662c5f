"""The HTTP routes, kept thin: read the input -> ``pipeline.analyze`` -> response model.

Health endpoints are always open; everything else sits behind ``require_api_key`` when ``DEEPFER_API_KEYS`` is
set. Errors are raised as ``deepfer.errors`` types and answered by ``http.errors``, never built here.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from deepfer.contract import FACE_SIZE, LABELS
from deepfer.engine.answers import model_summary, predict_response
from deepfer.engine.pipeline import Options, Pipeline
from deepfer.errors import DeepFERError, Forbidden, ModelLoadError, ModelRejected, RequestTimeout, Unauthorized
from deepfer.server.upload import Upload, read_images
from deepfer.settings import Settings
from deepfer.wire import (
    BatchItem,
    BatchResponse,
    ErrorBody,
    ErrorResponse,
    Health,
    ModelResponse,
    ModelSummary,
    PredictJSONRequest,
    PredictResponse,
    Readiness,
)

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <key>")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


async def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> None:
    """Accept any configured key, compared in constant time against every key (no early exit to time).

    ``async`` although it never awaits: FastAPI runs a plain ``def`` dependency on a worker thread, and that
    hop per request cost more CPU than the whole dependency (profiled under load).
    """
    keys = _settings(request).api_keys
    if not keys:
        return
    given = (bearer.credentials if bearer else None) or api_key
    if not given:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    if not key_matches(given, keys):
        raise Unauthorized("invalid API key")


def key_matches(given: str, keys: list[SecretStr]) -> bool:
    """``given`` is one of ``keys``, compared in constant time against every key (no early exit to time); also
    WS /stream's check of the key in its first message."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given.encode(), key.get_secret_value().encode())
    return matched


async def require_admin_token(
    request: Request, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Admin routes take only the admin token, never an API key: a client that may predict may not reload."""
    token = _settings(request).admin_token
    if token is None:
        raise Forbidden("admin routes are off: set DEEPFER_ADMIN_TOKEN to use them")
    given = bearer.credentials if bearer else ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise Unauthorized("admin routes need 'Authorization: Bearer <admin token>'")


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "empty body, invalid base64 or JSON, not an image, truncated or corrupt image",
        401: "missing or invalid API key (only when DEEPFER_API_KEYS is set)",
        413: "upload over max_upload_bytes, image over max_pixels, or too many files or form fields",
        415: "content type not multipart/JSON, or an image format other than JPEG/PNG/WebP/BMP",
        422: "an option out of range",
        503: "overloaded: retry after the Retry-After header's seconds",
        504: "the request took longer than request_timeout_s",
    }.items()
}
# The prediction routes' own errors; 401 is declared once, on the router that checks the key.
_PREDICT_ERRORS = {status: body for status, body in _ERRORS.items() if status != 401}
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
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["files"],
                }
            }
        },
    }
}

#: The tags every route carries, in the order /docs shows them.
TAGS: list[dict[str, Any]] = [
    {"name": "prediction", "description": "Faces and their emotions, for one image or a batch"},
    {"name": "model", "description": "What the service serves"},
    {"name": "operations", "description": "Health, readiness and Prometheus metrics"},
    {"name": "admin", "description": "Model reload; needs DEEPFER_ADMIN_TOKEN"},
]

_METRICS_EXAMPLE = 'deepfer_requests_total{route="/predict",status="200"} 42.0'

open_router = APIRouter(tags=["operations"])
router = APIRouter(dependencies=[Depends(require_api_key)], responses={401: _ERRORS[401]})
admin_router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin_token)],
    responses={
        401: {"model": ErrorResponse, "description": "missing or wrong admin token"},
        403: {"model": ErrorResponse, "description": "no admin token configured"},
    },
)


async def _options(
    request: Request,
    detect: Annotated[bool, Query(description="false: the whole image is one FER-framed face, as in FER2013")] = True,
    max_faces: Annotated[int | None, Query(ge=1, description="at most this many faces, largest first")] = None,
    min_face_size: Annotated[int, Query(ge=0, description="ignore faces whose box is smaller (pixels)")] = 0,
) -> Options:
    """Query options -> ``Options``; ``async`` for the same reason as ``require_api_key``."""
    limit = _settings(request).max_faces
    return Options(detect=detect, max_faces=min(max_faces or limit, limit), min_face_size=min_face_size)


@asynccontextmanager
async def _deadline(settings: Settings) -> AsyncIterator[None]:
    """Bound the whole request, upload included, so a slow client or a stuck stage cannot hold a slot forever."""
    try:
        async with asyncio.timeout(settings.request_timeout_s):
            yield
    except TimeoutError:
        raise RequestTimeout(f"request took longer than request_timeout_s={settings.request_timeout_s}") from None


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=_PREDICT_ERRORS,
    openapi_extra=_IMAGE_BODY,
    operation_id="predict",
    tags=["prediction"],
    summary="Emotions of every face in one image (multipart field 'file' or JSON {'image': base64})",
)
async def predict(request: Request, options: Annotated[Options, Depends(_options)]) -> PredictResponse:
    settings, pipeline = _settings(request), _pipeline(request)
    async with _deadline(settings):
        (upload,) = await read_images(
            request,
            field_name="file",
            max_upload_bytes=settings.max_upload_bytes,
            max_files=1,
            max_fields=settings.max_form_fields,
        )
        analysis = await pipeline.analyze(upload.image(), options)
    return predict_response(analysis)


@router.post(
    "/predict/batch",
    response_model=BatchResponse,
    responses=_PREDICT_ERRORS,
    openapi_extra=_BATCH_BODY,
    operation_id="predict_batch",
    tags=["prediction"],
    summary="Several images (multipart field 'files'); a bad file gives an error entry, not a failed batch",
)
async def predict_batch(request: Request, options: Annotated[Options, Depends(_options)]) -> BatchResponse:
    settings, pipeline = _settings(request), _pipeline(request)

    async def one(index: int, upload: Upload) -> BatchItem:
        try:
            analysis = await pipeline.analyze(upload.image(), options)
        except DeepFERError as error:
            request.app.state.metrics.errors.labels(error.code).inc()
            return BatchItem(index=index, filename=upload.filename, error=ErrorBody.of(error))
        return BatchItem(index=index, filename=upload.filename, result=predict_response(analysis))

    async with _deadline(settings):
        uploads = await read_images(
            request,
            field_name="files",
            max_upload_bytes=settings.max_upload_bytes,
            max_files=settings.max_batch_files,
            max_fields=settings.max_form_fields,
        )
        # Concurrently, so the faces of all files meet in the same classifier batches.
        items = await asyncio.gather(*(one(index, upload) for index, upload in enumerate(uploads)))
    return BatchResponse(results=list(items))


@router.get(
    "/model",
    response_model=ModelResponse,
    operation_id="get_model",
    tags=["model"],
    summary="The emotion model's labels, version and metrics",
)
async def model(request: Request) -> ModelResponse:
    pipeline, settings = _pipeline(request), _settings(request)
    info = pipeline.model
    return ModelResponse(
        name=info.name,
        version=info.version,
        sha256=info.sha256,
        labels=list(LABELS),
        input={"name": info.input_name, "shape": ["N", FACE_SIZE, FACE_SIZE, 1], "dtype": "float32", "range": "0..255"},
        metrics=info.metrics,
        evaluation=_evaluation(info.metrics),
        metadata=info.metadata,
        detector={
            "name": settings.detector_path.name,
            "score_threshold": settings.detection_score_threshold,
            "nms_threshold": settings.detection_nms_threshold,
            "max_side_px": settings.detection_max_side_px,
        },
    )


def _evaluation(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The served file's own figures, as recorded: never the training run's (those may describe another file)."""
    evaluation = metrics.get("evaluation")
    return evaluation if isinstance(evaluation, dict) else None


@admin_router.post(
    "/reload",
    response_model=ModelSummary,
    operation_id="reload_model",
    responses={422: {"model": ErrorResponse, "description": "the new file was rejected; the old model serves on"}},
    summary="Load the configured model files again and swap them in without dropping a request (as SIGHUP does)",
)
async def reload_model(request: Request) -> ModelSummary:
    try:
        info = await _pipeline(request).reload()
    except ModelLoadError as error:
        raise ModelRejected(f"{error}; still serving the previous model") from None
    return model_summary(info)


@router.get(
    "/metrics",
    response_class=Response,
    operation_id="get_metrics",
    tags=["operations"],
    responses={200: {"content": {"text/plain": {"example": _METRICS_EXAMPLE}}}},
    summary="Prometheus metrics (text exposition format)",
)
async def metrics(request: Request) -> Response:
    collectors = request.app.state.metrics
    return Response(collectors.render(), media_type=collectors.content_type)


@open_router.get("/healthz", response_model=Health, operation_id="healthz", summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@open_router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "warming up, draining, or the classifier worker stopped"}},
    operation_id="readyz",
    summary="Models loaded and warmed up: route traffic here",
)
async def readyz(request: Request, response: Response) -> Readiness:
    ready, detail = request.app.state.ready, request.app.state.ready_detail
    if request.app.state.draining:
        ready, detail = False, "draining: finishing requests before shutdown"
    elif ready and (failure := _pipeline(request).failure):
        ready, detail = False, failure
    if not ready:
        response.status_code = 503
    return Readiness(ready=ready, detail=detail)
