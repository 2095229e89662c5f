"""``GET /model`` (what is served, and how it scored) and ``POST /admin/reload`` (swap it without downtime)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from deepfer.contract import FACE_SIZE, LABELS
from deepfer.engine.answers import model_summary
from deepfer.errors import ModelLoadError, ModelRejected
from deepfer.server.dependencies import State, require_admin_token, require_api_key
from deepfer.server.errors import DECLARED
from deepfer.wire import ErrorResponse, ModelResponse, ModelSummary, ServedAccuracy

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
    summary="The served emotion model: its file, its own accuracy first, then labels, training record and detector",
)
async def model(service: State) -> ModelResponse:
    pipeline, settings = service.pipeline, service.settings
    info = pipeline.model
    evaluation = _evaluation(info.metrics)
    return ModelResponse(
        name=info.name,
        version=info.version,
        file=info.path.name,
        sha256=info.sha256,
        accuracy=_headline(evaluation),
        evaluation=evaluation,
        labels=list(LABELS),
        input={"name": info.input_name, "shape": ["N", FACE_SIZE, FACE_SIZE, 1], "dtype": "float32", "range": "0..255"},
        training_metrics={key: value for key, value in info.metrics.items() if key != "evaluation"},
        metadata=info.metadata,
        detector={
            "name": settings.detector_path.name,
            "score_threshold": settings.detection_score_threshold,
            "nms_threshold": settings.detection_nms_threshold,
            "max_side_px": settings.detection_max_side_px,
            "min_sharpness": settings.min_face_sharpness,
        },
    )


def _evaluation(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The served file's own figures, as recorded: never the training run's (those may describe another file)."""
    evaluation = metrics.get("evaluation")
    return evaluation if isinstance(evaluation, dict) else None


def _headline(evaluation: dict[str, Any] | None) -> ServedAccuracy | None:
    """PublicTest first: it was never used for a choice, so it is the honest figure; validation only as a fallback."""
    for split in ("test", "validation"):
        figures = (evaluation or {}).get(split)
        if isinstance(figures, dict) and isinstance(figures.get("accuracy"), int | float):
            return ServedAccuracy(
                split=split,
                accuracy=figures["accuracy"],
                macro_f1=figures.get("macro_f1"),
                ece_15_bins=figures.get("ece_15_bins"),
                faces=figures.get("count"),
            )
    return None


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
