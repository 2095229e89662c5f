"""Settings that name files: a bare name is a shipped model, a path is a path."""

from __future__ import annotations

from pathlib import Path

from deepfer.settings import MODELS_DIR, Settings


def test_a_bare_model_name_is_found_among_the_shipped_models_wherever_the_service_runs(tmp_path: Path) -> None:
    settings = Settings(classifier_path="emotion.onnx", detector_path="face_detection_yunet_2026may.onnx")
    assert settings.classifier_path == MODELS_DIR / "emotion.onnx" and settings.classifier_path.is_file()
    assert settings.detector_path.is_file()
    given = tmp_path / "mine.onnx"
    assert Settings(classifier_path=given).classifier_path == given
    assert Settings(classifier_path="./mine.onnx").classifier_path == Path("mine.onnx")  # the working directory's
