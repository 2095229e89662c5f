"""The HTTP edges a new user meets (issue 27): raw image bodies, typos in the query, limits that name their setting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import httpx
import numpy as np

from tests.imaging import DATA

SCENE = (DATA / "scenes" / "scene_0000.jpg").read_bytes()


def test_a_raw_image_body_is_answered_like_an_upload(client: httpx.Client) -> None:
    """``curl --data-binary @face.jpg -H 'Content-Type: image/jpeg'``: what many clients and vision APIs send."""
    uploaded = client.post("/predict", files={"file": SCENE}).json()
    for content_type in ("image/jpeg", "application/octet-stream", "image/png"):  # the bytes decide the format
        raw = client.post("/predict", content=SCENE, headers={"Content-Type": content_type})
        assert raw.status_code == 200, (content_type, raw.text)
        assert raw.json()["faces"] == uploaded["faces"]


def test_a_raw_body_keeps_the_upload_limit_and_names_its_setting(live_server: Callable[..., Any]) -> None:
    with live_server(max_upload_bytes=len(SCENE) // 2) as url:
        refused = httpx.post(f"{url}/predict", content=SCENE, headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert refused.status_code == 413, refused.text
        assert "DEEPFER_MAX_UPLOAD_BYTES" in refused.json()["error"]["message"]
        empty = httpx.post(f"{url}/predict", content=b"", headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert empty.status_code == 400 and empty.json()["error"]["code"] == "empty_body", empty.text
        # A batch stays multipart: one raw body cannot say where one file ends.
        batch = httpx.post(f"{url}/predict/batch", content=SCENE, headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert batch.status_code == 415, batch.text


def test_an_unknown_query_parameter_is_named_with_the_accepted_ones(client: httpx.Client) -> None:
    response = client.post("/predict?min_scor=0.5", files={"file": SCENE})
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "min_scor" in message and all(name in message for name in ("detect", "max_faces", "min_face_size"))
    batch = client.post("/predict/batch?detec=false", files=[("files", SCENE)])
    assert batch.status_code == 400 and "detec" in batch.json()["error"]["message"]
    assert client.post("/predict?max_faces=1", files={"file": SCENE}).status_code == 200


def test_a_pixel_limit_names_its_environment_variable(live_server: Callable[..., Any]) -> None:
    big = cv2.imencode(".png", np.zeros((1200, 1200, 3), np.uint8))[1].tobytes()  # 1.44 Mpx
    with live_server(max_pixels=1_000_000) as url:
        refused = httpx.post(f"{url}/predict", files={"file": big}, timeout=30)
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "too_many_pixels", refused.text
    assert "max_pixels" in refused.json()["error"]["message"]
    assert "DEEPFER_MAX_PIXELS" in refused.json()["error"]["message"]


def test_the_documented_json_example_is_answered_as_sent(client: httpx.Client) -> None:
    """ "Try it out" sends the schema's example: it was cut with "..." and refused as invalid base64."""
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    example = body["properties"]["image"]["examples"][0]
    answer = client.post("/predict?detect=false", json={"image": example})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["faces"]) == 1


def test_a_batch_schema_needs_a_file(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["files"]["minItems"] == 1
