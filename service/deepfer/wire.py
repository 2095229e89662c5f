"""The API's wire format: every response body, the JSON request and the error envelope, as pydantic models.

Declared on the routes so ``/docs`` and ``/openapi.json`` show exactly what is sent, and shared by everything that
sends or reads them (server, client, CLI, video), so it sits low: it imports the contract and the errors only.
Inside the service the pipeline works with frozen dataclasses and numpy arrays; ``deepfer.engine.answers`` is the
one place they become these models.
"""

from __future__ import annotations

import base64
import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from deepfer.contract import LABELS
from deepfer.errors import DeepFERError

#: A real answer of the service for tests/data/scenes/scene_0000.jpg, shown in /docs and the README's front page;
#: tests/http/test_examples.py checks it against a live run (and rewrites it with DEEPFER_UPDATE_EXAMPLES=1).
PREDICT_EXAMPLE = Path(__file__).resolve().parent / "examples" / "predict.json"

#: The seven labels as an enum, so the schema (and every generated client) lists the values ``emotion`` takes.
# Ignored: mypy cannot follow an enum built from a mapping, and spelling the seven out would be a second LABELS.
Emotion = StrEnum("Emotion", {label: label for label in LABELS})  # type: ignore[misc]


class ErrorBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"code": "bad_image", "message": "cannot decode the image: truncated"}]}
    )

    code: str = Field(description="stable machine-readable reason, e.g. bad_image, too_large, overloaded")
    message: str = Field(description="what was wrong, for a human")

    @classmethod
    def of(cls, error: DeepFERError) -> ErrorBody:
        return cls(code=error.code, message=error.message)


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer has this body."""

    error: ErrorBody

    @classmethod
    def of(cls, code: str, message: str) -> ErrorResponse:
        """The envelope every error answer carries, built here only (HTTP handlers and the connection guard)."""
        return cls(error=ErrorBody(code=code, message=message))


#: A 48x48 FER2013 face (the committed test face ``fer_happy.jpg``): the JSON example a "Try it out" sends as is.
FACE_EXAMPLE = Path(__file__).resolve().parent / "examples" / "face48.jpg"


def _add_face_example(schema: dict[str, Any]) -> None:
    """A whole, valid base64 image, read when the schema is built: a cut one ("...") was refused as sent."""
    schema["examples"] = [base64.b64encode(FACE_EXAMPLE.read_bytes()).decode()]


class PredictJSONRequest(BaseModel):
    """The JSON form of ``POST /predict``; options travel as query parameters for both forms."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(
        description="the image file's bytes, base64 (a data: URL prefix is accepted)",
        json_schema_extra=_add_face_example,
    )


class Box(BaseModel):
    x: int
    y: int
    width: int
    height: int


class Point(BaseModel):
    x: float
    y: float


class Landmarks(BaseModel):
    """YuNet's five points, named from the person's point of view (their right eye is on the image's left)."""

    right_eye: Point
    left_eye: Point
    nose: Point
    mouth_right: Point
    mouth_left: Point


class Probabilities(BaseModel):
    """Softmax over the seven FER2013 emotions; the values sum to 1."""

    angry: float
    disgust: float
    fear: float
    happy: float
    sad: float
    surprise: float
    neutral: float


class Quality(BaseModel):
    """How readable the face is, for a client to filter on (the detector's confidence is ``detection_score``)."""

    size_px: int = Field(
        description="the smaller side of the detected box in the original image's pixels, as min_face_size compares"
    )
    sharpness: float = Field(
        description="variance of the Laplacian of the 48x48 grey face the emotion was read from; blurred faces "
        "and blobs score low (blobs under 20, faces over 150 on the public scenes), dropped under min_sharpness"
    )


class Face(BaseModel):
    # Plain strings inside the service; the enum is there for the schema and for validation.
    model_config = ConfigDict(use_enum_values=True)

    box: Box = Field(description="face box in the original image's pixels (after EXIF rotation)")
    detection_score: float | None = Field(description="YuNet confidence; null when detect=false")
    landmarks: Landmarks | None = Field(description="null when detect=false")
    emotion: Emotion = Field(description="the most probable emotion")
    probabilities: Probabilities
    quality: Quality


class ImageSize(BaseModel):
    width: int
    height: int


class ModelSummary(BaseModel):
    name: str
    version: str
    sha256: str


def _add_predict_example(schema: dict[str, Any]) -> None:
    """Read when the schema is built (first /openapi.json), not at import."""
    schema["examples"] = [json.loads(PREDICT_EXAMPLE.read_text(encoding="utf-8"))]


class PredictResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra=_add_predict_example)

    faces: list[Face] = Field(description="largest face first; empty when no face was found")
    image: ImageSize
    model: ModelSummary


class BatchItem(BaseModel):
    """One file's outcome: exactly one of ``result`` and ``error`` is set."""

    index: int
    filename: str | None = None
    result: PredictResponse | None = None
    error: ErrorBody | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem] = Field(description="one entry per file, in upload order")


class ServedAccuracy(BaseModel):
    """The figure to quote for the file being served: it was scored on that very file (int8, temperature and all)."""

    split: Literal["test", "validation"] = Field(
        description="'test' = FER2013 PublicTest, never used for any choice; 'validation' only when the file "
        "carries no test figures"
    )
    accuracy: float
    macro_f1: float | None = None
    ece_15_bins: float | None = Field(default=None, description="expected calibration error, 15 bins")
    faces: int | None = Field(default=None, description="how many faces the figures are over")


class ModelResponse(BaseModel):
    name: str
    version: str
    file: str = Field(description="the served classifier file's name")
    sha256: str
    accuracy: ServedAccuracy | None = Field(
        description="the served file's own headline figures, or null when the file was never scored itself"
    )
    evaluation: dict[str, Any] | None = Field(
        description="every split the served file itself was scored on (the metrics entry's 'evaluation'), or null"
    )
    labels: list[str]
    input: dict[str, Any] = Field(description="name, shape and dtype of the classifier input")
    training_metrics: dict[str, Any] = Field(
        description="what the training run logged for the network it saved (one view, before the temperature, "
        "the export and int8): they describe the run, not necessarily this file; 'evaluation' is left out"
    )
    metadata: dict[str, str] = Field(description="all other metadata_props of the ONNX file")
    detector: dict[str, Any]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    detail: str


# --- WS /stream messages (deepfer.server.stream) -------------------------------------------------------------------


class StreamLimits(BaseModel):
    max_message_bytes: int
    max_fps: float
    burst_frames: int = Field(description="frames that may come at once; the budget refills at max_fps")
    idle_timeout_s: float


class StreamReady(BaseModel):
    """Sent once the stream is open (and the key, when the service has keys, accepted): send frames now."""

    type: Literal["ready"] = "ready"
    limits: StreamLimits
    model: ModelSummary


class StreamFace(Face):
    track_id: int | None = Field(description="the person's ID on this stream; null until seen in 3 frames in a row")
    smoothed_emotion: Emotion = Field(description="the most probable emotion of the smoothed probabilities")
    smoothed: Probabilities = Field(description="the track's probabilities smoothed over time (time constant 0.5 s)")


class StreamDropped(BaseModel):
    stale: int = Field(description="frames replaced by a newer one before the server got to them (superseded)")
    over_rate: int = Field(description="frames over the frame budget (rate): burst_frames, refilled at max_fps")
    busy: int = Field(description="frames that came while the service was overloaded (busy)")


class StreamTiming(BaseModel):
    queued_ms: float = Field(description="from the frame's arrival to the start of its analysis")
    analysis_ms: float = Field(description="decode, detection, classification and tracking")
    total_ms: float = Field(description="from the frame's arrival to this message being sent")


class StreamResult(BaseModel):
    """One processed frame."""

    type: Literal["result"] = "result"
    seq: int = Field(description="the frame's number on this stream: the n-th binary message, from 0")
    time_s: float = Field(description="when it arrived, seconds since the stream opened: the tracker's clock")
    faces: list[StreamFace]
    dropped: StreamDropped = Field(description="frames dropped so far on this stream")
    timing: StreamTiming


class StreamError(BaseModel):
    """A frame that could not be analysed (not an image, too many pixels); the stream stays open."""

    type: Literal["error"] = "error"
    seq: int
    error: ErrorBody


DropReason = Literal["rate", "superseded", "busy"]


class StreamFrameDropped(BaseModel):
    """A frame the server did not analyse, answered anyway so a client waiting for it never waits in vain."""

    type: Literal["dropped"] = "dropped"
    seq: int
    reason: DropReason = Field(
        description="rate: over the frame budget (burst_frames, refilled at max_fps); superseded: a newer frame "
        "came before the server got to it (latest frame wins); busy: the service was overloaded"
    )
