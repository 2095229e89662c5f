"""create_app(settings): the FastAPI application, its lifespan (models, batcher, warm-up) and middleware.

Startup loads both models before the server accepts a connection, so a missing, corrupt or contract-breaking
file stops the process with a ``ModelLoadError`` naming the file and the reason. Warm-up then runs in the
background and ``/readyz`` answers 503 until it ends; on SIGTERM ``server.DrainingServer`` sets
``app.state.draining`` so ``/readyz`` turns 503 before the listener closes, and the batcher stops only after
uvicorn has drained the in-flight requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import cv2
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.responses import Response

from service import api
from service.demo import install_demo
from service.errors import ModelLoadError, error_response, install_error_handlers
from service.metrics import Metrics
from service.observability import REQUEST_ID_HEADER, RequestMiddleware
from service.pipeline import Pipeline, open_pipeline
from service.settings import Settings

log = logging.getLogger("deepfer")


def create_app(settings: Settings) -> FastAPI:
    """Build the app; nothing is loaded until the lifespan starts."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with open_pipeline(settings, metrics) as pipeline:
                app.state.pipeline = pipeline
                warm_up = asyncio.create_task(_warm_up(app, pipeline))
                try:
                    yield
                finally:
                    app.state.ready, app.state.ready_detail = False, "shutting down"
                    await asyncio.gather(warm_up, return_exceptions=True)
        except ModelLoadError as error:
            log.critical("cannot start: %s", error)
            raise

    docs = settings.docs_open
    app = FastAPI(
        title="DeepFER",
        version=_package_version(),
        summary="Facial emotion recognition: YuNet face detection + a FER2013 classifier on ONNX Runtime.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        # Starlette would answer /predict/ with a redirect whose Location is built from the client's Host header;
        # an unknown path is a 404 instead.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.ready, app.state.ready_detail = False, "loading models"
    app.state.draining = False  # set on SIGTERM by server.DrainingServer
    install_error_handlers(app)
    app.include_router(api.open_router)
    app.include_router(api.router)
    install_demo(app)
    if settings.cors_origins:
        app.add_middleware(
            _EnvelopeCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
        )
    app.add_middleware(RequestMiddleware, metrics=metrics, log_requests=settings.access_log)
    # OpenCV reports undecodable input on stderr as well as by returning None; we answer 400 and need no noise.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return app


class _EnvelopeCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in the error envelope instead of plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        return error_response(response.status_code, "cors_refused", bytes(response.body).decode())


def app_from_env() -> FastAPI:
    """uvicorn factory for ``workers > 1``: each worker process reads its settings from DEEPFER_* itself."""
    return create_app(Settings())


async def _warm_up(app: FastAPI, pipeline: Pipeline) -> None:
    app.state.ready_detail = "warming up"
    await asyncio.to_thread(pipeline.warm_up)
    app.state.ready, app.state.ready_detail = True, "ready"
    log.info("ready", extra={"model_version": pipeline.model.version, "model_sha256": pipeline.model.sha256})


def _package_version() -> str:
    try:
        return version("deepfer")
    except PackageNotFoundError:
        return "0+unknown"
