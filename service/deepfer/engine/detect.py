"""YuNet face detection, run directly in ONNX Runtime: BGR image -> list[Detection(box, landmarks, score)].

Why not ``cv2.FaceDetectorYN``: it wraps the same network in OpenCV's DNN module, measured (2026-11, 2-core host)
at 7.7 ms per 640x480 scene against 5.5 ms for ONNX Runtime with this module's decoding (same boxes to the pixel;
``tests/unit/test_detect.py`` checks that agreement). Decoding follows OpenCV's ``FaceDetectorYN`` exactly: the image
is zero-padded to a multiple of 32, fed as raw BGR float NCHW, and each stride's anchors decode as
``centre = (cell + offset) * stride``, ``size = exp(log_size) * stride``, ``score = sqrt(cls * obj)``, then NMS.

Frame size and score threshold (``detection_max_side_px`` = 512, ``detection_score_threshold`` = 0.3, with the
pipeline's sharpness floor ``min_face_sharpness`` dropping the blobs the score cannot tell from faces) were chosen
together with ``python -m bench.detection_sweep`` on the public scenes; the tables and the reasons (15% less
detector CPU than the full frame; 480 px lifts a false box on grey frames) are in docs/model.md, "Detection and
framing calibration". It covers 640x480 frames only: a 1920x1080 frame is shrunk 3.75x, so small
faces in HD frames want a larger ``detection_max_side_px``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from deepfer.engine.onnx_sessions import Provider, open_session
from deepfer.engine.pixels import as_uint8
from deepfer.errors import ModelLoadError

_STRIDES: Final = (8, 16, 32)
_OUTPUTS: Final = tuple(f"{kind}_{stride}" for stride in _STRIDES for kind in ("cls", "obj", "bbox", "kps"))
_TOP_K: Final = 5000  # candidates kept before NMS, as in OpenCV


@dataclass(frozen=True)
class Detection:
    """One face in the coordinates of the image passed to ``detect``.

    box: (x, y, width, height) float pixels. landmarks: 5 x 2 float32 (x, y) in YuNet's order: right eye,
    left eye, nose tip, right mouth corner, left mouth corner (the person's right, i.e. the image's left).
    """

    box: tuple[float, float, float, float]
    landmarks: NDArray[np.float32]
    score: float

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


class FaceDetector:
    """Owns the YuNet session; refuses a file that does not have YuNet's inputs and twelve outputs."""

    def __init__(
        self,
        path: Path,
        *,
        score_threshold: float,
        nms_threshold: float,
        max_side_px: int,
        provider: Provider = "cpu",
        intra_op_threads: int = 1,
    ) -> None:
        self.path = path
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side_px = max_side_px
        self._session = open_session(path, provider=provider, intra_op_threads=intra_op_threads)
        inputs = self._session.get_inputs()
        outputs = {output.name for output in self._session.get_outputs()}
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3 or not outputs >= set(_OUTPUTS):
            raise ModelLoadError(
                f"{path} is not a YuNet detector: expected one [1,3,H,W] input and outputs {sorted(_OUTPUTS)}, "
                f"found {[(i.name, i.shape) for i in inputs]} -> {sorted(outputs)}"
            )
        self._input_name = inputs[0].name

    def detect(self, image: NDArray[np.uint8]) -> list[Detection]:
        """HxWx3 uint8 BGR -> faces above the score threshold, in original-image pixels, any order.

        Images larger than ``max_side_px`` are shrunk first: detection cost grows with area, and faces large
        enough to classify survive the shrink (see the calibration in the module docstring).
        """
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side_px / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = _shrink(image, size)
        detections = self._detect_at_native_size(image)
        if scale == 1.0:
            return detections
        return [_rescale(detection, 1.0 / scale) for detection in detections]

    def _detect_at_native_size(self, image: NDArray[np.uint8]) -> list[Detection]:
        height, width = image.shape[:2]
        padded_h, padded_w = _round_up(height, 32), _round_up(width, 32)
        # HxWx3 uint8 -> 1x3xH'xW' float32, zero padding at the bottom/right as OpenCV does.
        blob = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
        blob[0, :, :height, :width] = image.transpose(2, 0, 1)
        raw = dict(zip(_OUTPUTS, self._session.run(list(_OUTPUTS), {self._input_name: blob}), strict=True))

        boxes, landmarks, scores = [], [], []
        for stride in _STRIDES:
            cols = padded_w // stride
            cls = np.clip(raw[f"cls_{stride}"][0, :, 0], 0.0, 1.0)
            obj = np.clip(raw[f"obj_{stride}"][0, :, 0], 0.0, 1.0)
            score = np.sqrt(cls * obj)
            keep = np.flatnonzero(score >= self.score_threshold)
            if keep.size == 0:
                continue
            cell = np.stack([keep % cols, keep // cols], axis=1).astype(np.float32)  # (column, row)
            bbox = raw[f"bbox_{stride}"][0, keep]
            centre = (cell + bbox[:, :2]) * stride
            size = np.exp(bbox[:, 2:4]) * stride
            boxes.append(np.concatenate([centre - size / 2, size], axis=1))
            kps = raw[f"kps_{stride}"][0, keep].reshape(-1, 5, 2)
            landmarks.append((kps + cell[:, None, :]) * stride)
            scores.append(score[keep])

        if not scores:
            return []
        all_boxes = np.concatenate(boxes)
        all_landmarks = np.concatenate(landmarks).astype(np.float32)
        all_scores = np.concatenate(scores)
        kept = cv2.dnn.NMSBoxes(
            all_boxes.tolist(), all_scores.tolist(), self.score_threshold, self.nms_threshold, top_k=_TOP_K
        )
        return [
            Detection(
                box=(float(all_boxes[i, 0]), float(all_boxes[i, 1]), float(all_boxes[i, 2]), float(all_boxes[i, 3])),
                landmarks=all_landmarks[i],
                score=float(all_scores[i]),
            )
            for i in np.asarray(kept, dtype=np.int64).reshape(-1)
        ]


def _shrink(image: NDArray[np.uint8], size: tuple[int, int]) -> NDArray[np.uint8]:
    """Anti-aliased shrink to ``size`` (width, height): exact halvings while 2x or more too big, then bicubic.

    INTER_AREA straight to the target takes OpenCV's slow generic path at a fractional ratio: 2.2-2.8 ms of CPU
    for 640x480 -> 512x384 and 7-8 ms for 1920x1080 -> 512x288 on this machine. Halving is INTER_AREA's fast
    path, and within 2x bicubic's 4x4 taps still read every source pixel: 0.45-0.55 ms and 0.9 ms for the same
    shrinks, within 0.3 grey levels of INTER_AREA on average. On the public scenes (640x480, no halving) it
    finds the same 387 faces with the same 6 extra boxes as INTER_AREA (bilinear: 386).
    """
    while image.shape[1] >= 2 * size[0] and image.shape[0] >= 2 * size[1]:
        image = as_uint8(cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA))
    return as_uint8(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC))


def _round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


def _rescale(detection: Detection, factor: float) -> Detection:
    x, y, width, height = detection.box
    return Detection(
        box=(x * factor, y * factor, width * factor, height * factor),
        landmarks=(detection.landmarks * factor).astype(np.float32),
        score=detection.score,
    )
