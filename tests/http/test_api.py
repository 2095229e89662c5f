"""Every endpoint and input form of the live service, over real HTTP, with the shipped models."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest

from deepfer.contract import LABELS, MetadataKey
from deepfer.engine.align import to_batch
from deepfer.engine.classifier import EmotionClassifier
from deepfer.engine.pipeline import Options, locate
from deepfer.engine.workers import load_detector
from deepfer.settings import Settings
from tests.imaging import DATA, encode, read
from training.data import decode_face

SCENE = DATA / "scenes" / "scene_0000.jpg"  # three faces of different sizes


def faces_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    faces: list[dict[str, Any]] = response.json()["faces"]
    return faces


def assert_probabilities(face: dict[str, Any]) -> None:
    probabilities = face["probabilities"]
    assert list(probabilities) == list(LABELS)
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert all(0.0 <= value <= 1.0 for value in probabilities.values())
    assert face["emotion"] == max(probabilities, key=probabilities.get)


def test_health_and_readiness_are_open_and_cheap(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "detail": "ready"}


def test_multipart_scene_returns_every_face_largest_first(client: httpx.Client) -> None:
    body = client.post("/predict", files={"file": ("scene.jpg", SCENE.read_bytes(), "image/jpeg")}).json()
    assert body["image"] == {"width": 640, "height": 480}
    assert set(body["model"]) == {"name", "version", "sha256"}
    faces = body["faces"]
    assert len(faces) == 3
    areas = [face["box"]["width"] * face["box"]["height"] for face in faces]
    assert areas == sorted(areas, reverse=True)
    for face in faces:
        assert_probabilities(face)
        assert 0.0 < face["detection_score"] <= 1.0
        assert set(face["landmarks"]) == {"right_eye", "left_eye", "nose", "mouth_right", "mouth_left"}


def test_base64_json_gives_the_same_answer_as_multipart(client: httpx.Client) -> None:
    data = SCENE.read_bytes()
    multipart = client.post("/predict", files={"file": data}).json()
    as_json = client.post("/predict", json={"image": base64.b64encode(data).decode()}).json()
    data_url = client.post("/predict", json={"image": "data:image/jpeg;base64," + base64.b64encode(data).decode()})
    assert as_json == multipart == data_url.json()


@pytest.mark.parametrize("extension", [".jpg", ".png", ".webp", ".bmp"])
def test_every_supported_format(client: httpx.Client, extension: str) -> None:
    data = encode(read("scenes/scene_0000.jpg"), extension)
    assert len(faces_of(client.post("/predict", files={"file": data}))) == 3


def same_faces(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """Equal faces, probabilities to 1e-6: a face classified in a batch of one or of three may differ in the last
    float32 bit (ONNX Runtime's kernels take other paths for other batch sizes)."""
    if len(got) != len(expected):
        return False
    strip = [{k: v for k, v in face.items() if k != "probabilities"} for face in (*got, *expected)]
    close = all(
        abs(a["probabilities"][name] - b["probabilities"][name]) < 1e-6
        for a, b in zip(got, expected, strict=True)
        for name in a["probabilities"]
    )
    return strip[: len(got)] == strip[len(got) :] and close


def test_options_limit_and_filter_faces(client: httpx.Client) -> None:
    data = SCENE.read_bytes()
    everything = faces_of(client.post("/predict", files={"file": data}))
    largest = faces_of(client.post("/predict", params={"max_faces": 1}, files={"file": data}))
    assert same_faces(largest, everything[:1])
    big_only = faces_of(client.post("/predict", params={"min_face_size": 120}, files={"file": data}))
    assert same_faces(big_only, [f for f in everything if min(f["box"]["width"], f["box"]["height"]) >= 120])
    assert 0 < len(big_only) < len(everything)


def test_detect_false_treats_the_image_as_one_face(client: httpx.Client) -> None:
    faces = faces_of(client.post("/predict", params={"detect": "false"}, files={"file": read_bytes("fer_happy")}))
    assert len(faces) == 1
    assert faces[0]["box"] == {"x": 0, "y": 0, "width": 48, "height": 48}
    assert faces[0]["detection_score"] is None
    assert faces[0]["landmarks"] is None
    assert_probabilities(faces[0])


def test_no_face_is_200_with_an_empty_list(client: httpx.Client) -> None:
    response = client.post("/predict", files={"file": read_bytes("no_face")})
    assert response.status_code == 200
    assert response.json()["faces"] == []


def test_batch_answers_in_order_and_isolates_a_bad_file(client: httpx.Client) -> None:
    files = [
        ("files", ("scene.jpg", SCENE.read_bytes(), "image/jpeg")),
        ("files", ("notes.txt", b"this is not an image", "text/plain")),
        ("files", ("empty.jpg", read_bytes("no_face"), "image/jpeg")),
    ]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [item["index"] for item in results] == [0, 1, 2]
    assert [item["filename"] for item in results] == ["scene.jpg", "notes.txt", "empty.jpg"]
    assert len(results[0]["result"]["faces"]) == 3 and results[0]["error"] is None
    assert results[1]["result"] is None and results[1]["error"]["code"] == "bad_image"
    assert results[2]["result"]["faces"] == []


def test_model_reports_labels_version_and_metrics(client: httpx.Client) -> None:
    body = client.get("/model").json()
    assert body["labels"] == list(LABELS)
    assert body["input"]["shape"] == ["N", 48, 48, 1]
    assert isinstance(body["training_metrics"], dict) and body["version"] and len(body["sha256"]) == 64
    assert body["detector"] == {
        "name": "face_detection_yunet_2026may.onnx",
        "score_threshold": 0.3,
        "nms_threshold": 0.3,
        "max_side_px": 512,
        "min_sharpness": 50.0,
    }


def test_openapi_documents_every_route_with_models(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/healthz", "/readyz", "/metrics", "/model"} <= set(schema["paths"])
    predict = schema["paths"]["/predict"]["post"]
    assert set(predict["requestBody"]["content"]) == {
        "multipart/form-data",
        "application/json",
        "image/*",
        "application/octet-stream",
    }
    assert predict["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("PredictResponse")
    assert predict["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    assert client.get("/docs").status_code == 200


def test_request_id_is_echoed_or_made(client: httpx.Client) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)


def test_metrics_count_requests_by_route_and_status(client: httpx.Client) -> None:
    client.post("/predict", files={"file": SCENE.read_bytes()})
    client.get("/no-such-route")
    text = client.get("/metrics").text
    assert re.search(r'deepfer_requests_total\{route="/predict",status="200"\} [1-9]', text)
    assert re.search(r'deepfer_requests_total\{route="unmatched",status="404"\} [1-9]', text)
    for name in ("deepfer_request_seconds_bucket", "deepfer_faces_per_request_bucket", "deepfer_batch_size_bucket"):
        assert name in text
    assert "deepfer_queue_depth" in text


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def test_concurrent_requests_share_classifier_runs(client: httpx.Client, server_url: str) -> None:
    """16 one-face requests at once must take fewer than 16 ONNX runs: faces from different requests met."""
    before = client.get("/metrics").text
    face = read_bytes("fer_surprise")

    def one(_: int) -> int:
        with httpx.Client(base_url=server_url, timeout=30) as own:
            return own.post("/predict", params={"detect": "false"}, files={"file": face}).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert list(pool.map(one, range(16))) == [200] * 16
    after = client.get("/metrics").text
    runs = metric(after, "deepfer_batch_size_count") - metric(before, "deepfer_batch_size_count")
    faces = metric(after, "deepfer_batch_size_sum") - metric(before, "deepfer_batch_size_sum")
    assert faces == 16
    print(f"16 concurrent one-face requests -> {runs:.0f} classifier runs (mean batch {faces / runs:.1f})")
    assert faces / runs > 1


def test_detect_false_serving_matches_the_training_loader_exactly(client: httpx.Client) -> None:
    """One face through training.data.decode_face and through the serving path with detect=false: the 48x48
    arrays are identical, and the live service's probabilities are the model's output on the training array."""
    data = read_bytes("fer_happy")
    training_face = decode_face(data)  # 48 x 48 uint8, what training feeds the model

    settings = Settings()
    serving_face = locate(data, Options(detect=False), load_detector(settings), settings).crops[0]
    np.testing.assert_array_equal(serving_face, training_face)

    served = faces_of(client.post("/predict", params={"detect": "false"}, files={"file": data}))[0]
    offline = EmotionClassifier(Settings().classifier_path).run(to_batch([training_face]))[0]
    assert [served["probabilities"][label] for label in LABELS] == pytest.approx(offline.tolist(), abs=1e-6)


def read_bytes(name: str) -> bytes:
    return (DATA / "images" / f"{name}.jpg").read_bytes()


def test_settings_refuse_a_queue_smaller_than_one_image() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        Settings(queue_size=4, max_faces=8)


def test_model_reports_the_served_files_own_figures_first(
    client: httpx.Client, live_server: Callable[..., Any], tmp_path: Path
) -> None:
    """The file, then its own PublicTest figures; the training run's figures only under a name that says so."""
    shipped = client.get("/model").json()
    assert list(shipped)[:5] == ["name", "version", "file", "sha256", "accuracy"]
    assert shipped["file"] == Settings().classifier_path.name
    test_figures = shipped["evaluation"]["test"]
    assert shipped["accuracy"] == {
        "split": "test",
        "accuracy": test_figures["accuracy"],
        "macro_f1": test_figures["macro_f1"],
        "ece_15_bins": test_figures["ece_15_bins"],
        "faces": test_figures["count"],
    }
    assert "metrics" not in shipped and "evaluation" not in shipped["training_metrics"]

    model = onnx.load(str(Settings().classifier_path))
    (metrics,) = [prop for prop in model.metadata_props if prop.key == MetadataKey.METRICS]
    only_validation = {"validation": {"count": 2872, "accuracy": 0.681, "macro_f1": 0.666}}
    metrics.value = json.dumps({**json.loads(metrics.value), "evaluation": only_validation})
    scored = tmp_path / "scored.onnx"
    onnx.save(model, str(scored))
    unscored = tmp_path / "unscored.onnx"
    metrics.value = json.dumps({"val_accuracy": 0.66})
    onnx.save(model, str(unscored))
    with live_server(classifier_path=scored) as url:
        body = httpx.get(f"{url}/model", timeout=30).json()
    assert body["file"] == "scored.onnx" and body["evaluation"] == only_validation
    assert body["accuracy"] == {
        "split": "validation",
        "accuracy": 0.681,
        "macro_f1": 0.666,
        "ece_15_bins": None,
        "faces": 2872,
    }
    with live_server(classifier_path=unscored) as url:
        body = httpx.get(f"{url}/model", timeout=30).json()
    assert (
        body["accuracy"] is None and body["evaluation"] is None and body["training_metrics"] == {"val_accuracy": 0.66}
    )


def test_classify_time_is_split_into_queue_wait_and_run(live_server: Callable[..., Any]) -> None:
    """Per image, the wait for a classifier batch; per classifier run, the run: one observation each here."""
    with live_server() as url:
        assert httpx.post(f"{url}/predict", files={"file": SCENE.read_bytes()}, timeout=30).status_code == 200
        text = httpx.get(f"{url}/metrics", timeout=30).text
    for stage in ("decode", "detect", "align", "queue_wait", "classify"):
        assert metric(text, f'deepfer_stage_seconds_count{{stage="{stage}"}}') == 1, stage


def test_the_shipped_ensemble_is_one_setting_away(live_server: Callable[..., Any]) -> None:
    """The averaged file (issue 24) is selected by its bare name; /model names it, lists its members with their
    recipes, and leads with its own PublicTest figures; /predict answers with it."""
    with live_server(classifier_path="emotion-ensemble-int8.onnx") as url:
        model = httpx.get(f"{url}/model", timeout=30).json()
        answer = httpx.post(f"{url}/predict", files={"file": SCENE.read_bytes()}, timeout=30).json()
    assert model["file"] == "emotion-ensemble-int8.onnx" and "ensemble" in model["name"]
    members = json.loads(model["metadata"]["ensemble_members"])
    assert len(members) >= 2
    assert all(member["data_sha256"] == model["metadata"]["training_data_sha256"] for member in members)
    assert all(member["command"].startswith("python -m training.train") for member in members)
    assert model["accuracy"]["split"] == "test" and model["evaluation"]["validation"]["accuracy"] > 0.6
    assert answer["model"]["sha256"] == model["sha256"] and len(answer["faces"]) == 3
