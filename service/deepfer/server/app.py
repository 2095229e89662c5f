"""create_app(settings): the FastAPI application, its lifespan (models, batcher, warm-up) and middleware.

Startup loads both models before the server accepts a connection, so a missing, corrupt or contract-breaking
file stops the process with a ``ModelLoadError`` naming the file and the reason. Warm-up then runs in the
background and ``/readyz`` answers 503 until it ends; on SIGTERM ``server.DrainingServer`` sets
``ServiceState.draining`` so ``/readyz`` turns 503 before the listener closes, and the batcher stops only after
uvicorn has drained the in-flight requests.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import cv2
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.responses import Response

from deepfer.engine.capacity import Slots
from deepfer.engine.models import Models
from deepfer.engine.pipeline import Pipeline, open_pipeline
from deepfer.errors import ModelLoadError
from deepfer.metrics import Metrics
from deepfer.server import routes
from deepfer.server.admission import AdmissionMiddleware
from deepfer.server.demo import install_demo
from deepfer.server.docs import install_docs
from deepfer.server.errors import error_response, install_error_handlers
from deepfer.server.middleware import REQUEST_ID_HEADER, RequestMiddleware
from deepfer.server.routes import predict as predict_routes
from deepfer.server.state import ServiceState, service_state
from deepfer.server.stream import stream_router
from deepfer.settings import Settings

log = logging.getLogger("deepfer")

_DESCRIPTION = """\
Send an image; get every face's box, five landmarks and the probabilities of the seven FER2013 emotions.

* Images: JPEG, PNG, WebP or BMP, as multipart field `file` or JSON `{"image": "<base64>"}`.
* Authentication: when the service has API keys, send `Authorization: Bearer <key>` or `X-API-Key: <key>`.
* Errors: every 4xx/5xx body is `{"error": {"code", "message"}}`; 503 comes with `Retry-After`.
"""


def create_app(settings: Settings, models: Models | None = None) -> FastAPI:
    """Build the app; the models are loaded when the lifespan starts, unless ``models`` are already loaded."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with open_pipeline(settings, metrics, models) as pipeline, _scrape_port(settings, metrics):
                service_state(app).loaded = pipeline
                warm_up = asyncio.create_task(_warm_up(service_state(app), pipeline))
                try:
                    with _reload_on_sighup(pipeline):
                        yield
                finally:
                    service_state(app).ready, service_state(app).ready_detail = False, "shutting down"
                    # A shutdown during warm-up (a failed port bind, say) must not log "ready" afterwards.
                    warm_up.cancel()
                    await asyncio.gather(warm_up, return_exceptions=True)
        except ModelLoadError as error:
            log.critical("cannot start: %s", error)
            raise

    docs = settings.docs_open
    app = FastAPI(
        title="DeepFER",
        version=_package_version(),
        summary="Facial emotion recognition: YuNet face detection + a FER2013 classifier on ONNX Runtime.",
        description=_DESCRIPTION,
        license_info={"name": "MIT", "identifier": "MIT"},
        openapi_tags=routes.TAGS,
        docs_url=None,  # served offline by deepfer.server.docs when open
        redoc_url=None,
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
        # Starlette would answer /predict/ with a redirect whose Location is built from the client's Host header;
        # an unknown path is a 404 instead.
        redirect_slashes=False,
    )
    streams = Slots("streams open", settings.stream_max_connections, setting="stream_max_connections")
    app.state.service = state = ServiceState(settings, metrics, streams)
    install_error_handlers(app, on_error=lambda code: metrics.errors.labels(code).inc())
    # FastAPI documents replacing app.openapi as the way to shape the schema; mypy sees a method assigned.
    app.openapi = partial(_openapi_as_configured, app, settings)  # type: ignore[method-assign]
    for router in routes.ROUTERS:
        app.include_router(router)
    app.include_router(stream_router)
    install_demo(app)
    if docs:
        install_docs(app)
    # Innermost of the three, so a refusal still carries CORS headers, a request id, a log line and its metrics.
    app.add_middleware(
        AdmissionMiddleware,
        pipeline=lambda: state.pipeline,
        routes={route.path: route for route in predict_routes.router.routes if isinstance(route, APIRoute)},
        on_refused=lambda code: metrics.errors.labels(code).inc(),
    )
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


def _openapi_as_configured(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The schema of the API this service runs: the admin routes only with ``admin_token`` (without it they answer
    403), and only the security it enforces (keys on the keyed routes when ``api_keys`` is set). Declared always,
    generated clients and "Try it out" asked for credentials nothing checks, and a tester expected the 401 of a
    missing key from an open route."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
            license_info=app.license_info,
        )
        if settings.admin_token is None:  # the admin routes are off (403): not part of this service's API
            schema["paths"] = {path: ops for path, ops in schema["paths"].items() if not path.startswith("/admin/")}
            schema["tags"] = [tag for tag in schema.get("tags", []) if tag["name"] != "admin"]
        for path, operations in schema.get("paths", {}).items():
            enforced = settings.admin_token is not None if path.startswith("/admin/") else bool(settings.api_keys)
            for operation in operations.values():
                if not enforced:
                    operation.pop("security", None)
                    operation.get("responses", {}).pop("401", None)
        if not settings.api_keys and settings.admin_token is None:
            schema.get("components", {}).pop("securitySchemes", None)
        app.openapi_schema = schema
    return app.openapi_schema


def app_from_env() -> FastAPI:
    """uvicorn factory for ``workers > 1``: each worker process reads its settings from DEEPFER_* itself."""
    return create_app(Settings())


@asynccontextmanager
async def _scrape_port(settings: Settings, metrics: Metrics) -> AsyncIterator[None]:
    """The open /metrics listener of ``metrics_port``, for as long as the app runs."""
    if settings.metrics_port is None:
        yield
        return
    server = metrics.serve_on(settings.host, settings.metrics_port)
    log.info("metrics listener", extra={"host": settings.host, "port": settings.metrics_port})
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _reload_on_sighup(pipeline: Pipeline) -> Iterator[None]:
    """``kill -HUP`` reloads the models, as the admin route does. Only the main thread may own signals, so a
    server started in a thread (the tests' servers) skips this; several workers get uvicorn's own SIGHUP."""
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[None]] = set()  # strong references, or a running reload could be collected

    def reload() -> None:
        task = loop.create_task(_reload_logged(pipeline))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, reload)
    except (ValueError, RuntimeError, NotImplementedError):
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


async def _reload_logged(pipeline: Pipeline) -> None:
    """A SIGHUP reload has no caller to answer: its outcome goes to the log (and the reload metrics)."""
    try:
        await pipeline.reload()
    except ModelLoadError as error:
        log.error("model reload rejected, the previous model keeps serving: %s", error)


async def _warm_up(state: ServiceState, pipeline: Pipeline) -> None:
    state.ready_detail = "warming up"
    await asyncio.to_thread(pipeline.warm_up)
    state.ready, state.ready_detail = True, "ready"
    log.info("ready", extra={"model_version": pipeline.model.version, "model_sha256": pipeline.model.sha256})


def _package_version() -> str:
    try:
        return version("deepfer")
    except PackageNotFoundError:
        return "0+unknown"
