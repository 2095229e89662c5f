"""Operations: ``/healthz`` and ``/readyz`` (always open, for probes) and ``/metrics`` (behind the keys)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from deepfer.server.dependencies import State, require_api_key
from deepfer.server.errors import DECLARED
from deepfer.wire import Health, Readiness

_METRICS_EXAMPLE = 'deepfer_requests_total{route="/predict",status="200"} 42.0'

open_router = APIRouter(tags=["operations"])
router = APIRouter(dependencies=[Depends(require_api_key)], responses={401: DECLARED[401]}, tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    operation_id="get_metrics",
    responses={200: {"content": {"text/plain": {"example": _METRICS_EXAMPLE}}}},
    summary="Prometheus metrics (text exposition format)",
)
async def metrics(service: State) -> Response:
    collectors = service.metrics
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
async def readyz(service: State, response: Response) -> Readiness:
    ready, detail = service.ready, service.ready_detail
    if service.draining:
        ready, detail = False, "draining: finishing requests before shutdown"
    elif ready and (failure := service.pipeline.failure):
        ready, detail = False, failure
    if not ready:
        response.status_code = 503
    return Readiness(ready=ready, detail=detail)
