"""The one place the pipeline's plain results (frozen dataclasses, numpy arrays) become the API's wire models.

Every answer goes through here, whoever sends it: the HTTP routes, ``deepfer predict`` and ``deepfer video`` run
locally, and (through ``face``) the stream's tracked faces, so a field is computed the same way everywhere.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from deepfer.contract import LABELS
from deepfer.engine.classifier import ModelRecord
from deepfer.engine.pipeline import Analysis, FaceResult
from deepfer.wire import Box, Face, ImageSize, Landmarks, ModelSummary, Point, PredictResponse, Probabilities, Quality


def predict_response(analysis: Analysis) -> PredictResponse:
    return PredictResponse(
        faces=[face(result) for result in analysis.faces],
        image=ImageSize(width=analysis.width, height=analysis.height),
        model=model_summary(analysis.model),
    )


def model_summary(model: ModelRecord) -> ModelSummary:
    return ModelSummary(name=model.name, version=model.version, sha256=model.sha256)


def face(result: FaceResult) -> Face:
    x, y, width, height = result.box
    landmarks = None
    if result.landmarks is not None:
        points = [Point(x=float(px), y=float(py)) for px, py in result.landmarks]
        landmarks = Landmarks(
            right_eye=points[0], left_eye=points[1], nose=points[2], mouth_right=points[3], mouth_left=points[4]
        )
    return Face(
        box=Box(x=x, y=y, width=width, height=height),
        detection_score=result.detection_score,
        landmarks=landmarks,
        emotion=result.emotion,
        probabilities=probabilities(result.probabilities),
        quality=Quality(size_px=result.quality.size_px, sharpness=round(result.quality.sharpness, 1)),
    )


def probabilities(row: NDArray[np.float32]) -> Probabilities:
    """A row of seven probabilities (``LABELS`` order) as the named fields every client reads."""
    return Probabilities(**dict(zip(LABELS, (float(p) for p in row), strict=True)))
