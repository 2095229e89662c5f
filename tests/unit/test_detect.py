"""FaceDetector: YuNet in ONNX Runtime decodes exactly like cv2.FaceDetectorYN, and checks what it loads."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfer.engine.detect import FaceDetector
from deepfer.errors import ModelLoadError
from deepfer.settings import Settings
from tests.imaging import read

MODEL = Settings().detector_path


def detector(threshold: float = 0.4, max_side_px: int = 640) -> FaceDetector:
    return FaceDetector(MODEL, score_threshold=threshold, nms_threshold=0.3, max_side_px=max_side_px)


@pytest.mark.parametrize("scene", ["scene_0000.jpg", "scene_0002.jpg"])
def test_same_faces_as_opencv_facedetectoryn(scene: str) -> None:
    image = read(f"scenes/{scene}")
    ours = sorted([*found.box, *found.landmarks.ravel(), found.score] for found in detector(0.3).detect(image))
    reference = cv2.FaceDetectorYN.create(str(MODEL), "", (image.shape[1], image.shape[0]), 0.3, 0.3, 5000)
    _, faces = reference.detect(image)
    assert len(ours) == len(faces) >= 3
    np.testing.assert_allclose(np.array(ours), np.array(sorted(faces.tolist())), atol=1e-3)


def test_downscaled_detection_reports_original_pixels() -> None:
    image = read("scenes/scene_0000.jpg")
    big = cv2.resize(image, (1280, 960), interpolation=cv2.INTER_CUBIC)
    native = sorted(found.box for found in detector().detect(image))
    shrunk = sorted(found.box for found in detector(max_side_px=640).detect(big))
    assert len(native) == len(shrunk) == 3
    np.testing.assert_allclose(np.array(shrunk) / 2, np.array(native), atol=3)


def test_blank_image_has_no_face() -> None:
    assert detector().detect(np.zeros((480, 640, 3), np.uint8)) == []


def test_refuses_a_file_that_is_not_yunet(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not a YuNet detector"):
        FaceDetector(Settings().classifier_path, score_threshold=0.4, nms_threshold=0.3, max_side_px=640)
    with pytest.raises(ModelLoadError, match="not found"):
        FaceDetector(tmp_path / "missing.onnx", score_threshold=0.4, nms_threshold=0.3, max_side_px=640)
