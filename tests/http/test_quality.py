"""Detection quality is the caller's to control: ``min_score`` and ``min_sharpness`` on both prediction routes, and
each face's ``quality`` (size and sharpness) to filter on, against the real service on a committed scene."""

from __future__ import annotations

from typing import Any

import cv2
import httpx
import pytest

from tests.imaging import encode, read

SCENE = "scenes/scene_0000.jpg"  # three faces, detection scores 0.92, 0.91 and 0.86


def faces(client: httpx.Client, image: bytes, **params: Any) -> list[dict[str, Any]]:
    response = client.post("/predict", files={"file": image}, params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["faces"]
    return found


def blurred(sigma: float) -> bytes:
    """The scene out of focus: a Gaussian blur of ``sigma`` pixels, saved losslessly."""
    return encode(cv2.GaussianBlur(read(SCENE), (0, 0), sigma), ".png")


def test_min_score_drops_the_faces_scored_below_it(client: httpx.Client) -> None:
    image = encode(read(SCENE), ".png")
    everyone = faces(client, image, min_score=0.2)
    confident = faces(client, image, min_score=0.9)
    assert len(everyone) == 3
    assert 0 < len(confident) < 3
    assert all(face["detection_score"] >= 0.9 for face in confident)
    assert {face["detection_score"] for face in confident} < {face["detection_score"] for face in everyone}
    batch = client.post("/predict/batch", files=[("files", image)], params={"min_score": 0.9})
    assert batch.status_code == 200, batch.text
    assert len(batch.json()["results"][0]["result"]["faces"]) == len(confident)


@pytest.mark.parametrize(
    ("name", "value"),
    [("min_score", "1.5"), ("min_score", "-1"), ("min_score", "abc"), ("min_sharpness", "-1"), ("min_sharpness", "x")],
)
def test_an_invalid_quality_option_is_a_422_naming_it(client: httpx.Client, name: str, value: str) -> None:
    image = encode(read(SCENE), ".png")
    for route, field in (("/predict", "file"), ("/predict/batch", "files")):
        response = client.post(route, files={field: image}, params={name: value})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and name in error["message"]
    assert len(faces(client, image)) == 3  # and the service goes on answering


def test_each_face_has_its_size_and_sharpness_and_blur_lowers_it(client: httpx.Client) -> None:
    sharp = faces(client, encode(read(SCENE), ".png"))
    soft = faces(client, blurred(3))
    assert len(sharp) == len(soft) == 3
    for face in sharp:
        box = face["box"]
        assert abs(face["quality"]["size_px"] - min(box["width"], box["height"])) <= 1
    # Same faces, largest first in both; each lost detail, so each is less sharp.
    for clear, blurry in zip(sharp, soft, strict=True):
        assert blurry["quality"]["sharpness"] < clear["quality"]["sharpness"] / 2


def test_faces_blurred_past_reading_are_dropped_unless_asked_for(client: httpx.Client) -> None:
    """A sigma-6 blur leaves the detector sure of faces (scores 0.6-0.8) but nothing the classifier could read:
    dropped by default (DEEPFER_MIN_FACE_SHARPNESS), returned with ``min_sharpness=0`` for whoever wants them."""
    image = blurred(6)
    assert faces(client, image) == []
    kept = faces(client, image, min_sharpness=0)
    assert len(kept) == 3
    assert all(face["detection_score"] >= 0.5 and face["quality"]["sharpness"] < 50 for face in kept)
