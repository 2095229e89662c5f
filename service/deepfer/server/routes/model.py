"""``GET /model`` (what is served, and how it scored) and ``POST /admin/reload`` (swap it without downtime)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from deepfer.contract import FACE_SIZE, LABELS
from deepfer.engine.answers import model_summary
from deepfer.errors import ModelLoadError, ModelRejected
from deepfer.server.dependencies import State, require_admin_token, require_api_key
from deepfer.server.errors import DECLARED
from deepfer.wire import ErrorResponse, ModelResponse, ModelSummary

router = APIRouter(dependencies=[Depends(require_api_key)], responses={401: DECLARED[401]}, tags=["model"])
admin_router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin_token)],
    responses={
        401: {"model": ErrorResponse, "description": "missing or wrong admin token"},
        403: {"model": ErrorResponse, "description": "no admin token configured"},
    },
)


@router.get(
    "/model",
    response_model=ModelResponse,
    operation_id="get_model",
    summary="The emotion model's labels, version and metrics",
)
async def model(service: State) -> ModelResponse:
    pipeline, settings = service.pipeline, service.settings
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
async def reload_model(service: State) -> ModelSummary:
    try:
        info = await service.pipeline.reload()
    except ModelLoadError as error:
        raise ModelRejected(f"{error}; still serving the previous model") from None
    return model_summary(info)
