"""Whatever a caller sends: every bad input gets its documented 4xx envelope, never a 5xx, and the service then
still answers correctly. Also the limits, API keys, CORS, backpressure and timeout, each on a real server."""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from starlette.requests import Request

from deepfer.errors import TooLarge
from deepfer.server.upload import read_images
from tests.hostile_inputs import huge_int_json, long_boundary_multipart, nested_json
from tests.imaging import DATA, encode, read, with_exif_orientation

SCENE = (DATA / "scenes" / "scene_0000.jpg").read_bytes()
STRICT = {
    "api_keys": "key-one,key-two",
    "cors_origins": ["http://allowed.example"],
    "max_upload_bytes": 100_000,
    "max_batch_files": 2,
    "max_concurrent_images": 1,
    "request_timeout_s": 1.0,
    "access_log": True,
}
KEY = {"X-API-Key": "key-two"}
JSON = {"content-type": "application/json"}


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height and whose data is a few bytes: a bomb, as far as a header goes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00\x00\x00\x00IEND\xaeB`\x82"


def corrupted(data: bytes) -> bytes:
    """Same length and header, garbage in the middle of the entropy-coded data."""
    middle = len(data) // 2
    return data[:middle] + bytes(256) + b"\xff\x00" * 128 + data[middle + 512 :]


BAD_REQUESTS: dict[str, tuple[dict[str, Any], int, str]] = {
    "empty json body": ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "empty_body"),
    "empty multipart file": ({"files": {"file": b""}}, 400, "empty_body"),
    "not an image": ({"files": {"file": b"hello, I am text"}}, 400, "bad_image"),
    "truncated jpeg": ({"files": {"file": SCENE[: len(SCENE) // 2]}}, 400, "bad_image"),
    "truncated png header": ({"files": {"file": encode(read("scenes/scene_0000.jpg"), ".png")[:20]}}, 400, "bad_image"),
    "corrupt png": ({"files": {"file": corrupted(encode(read("scenes/scene_0000.jpg"), ".png"))}}, 400, "bad_image"),
    "gif": ({"files": {"file": b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"}}, 415, "unsupported_format"),
    "tiff": ({"files": {"file": b"II*\x00" + bytes(64)}}, 415, "unsupported_format"),
    "wrong content type": (
        {"content": SCENE, "headers": {"content-type": "text/plain"}},
        415,
        "unsupported_media_type",
    ),
    "no content type": ({"content": SCENE}, 415, "unsupported_media_type"),
    "invalid base64": ({"json": {"image": "not base64 at all!"}}, 400, "invalid_base64"),
    "invalid json": ({"content": b"{nope", "headers": {"content-type": "application/json"}}, 400, "bad_request"),
    "json without image": ({"json": {"picture": "abc"}}, 400, "bad_request"),
    "multipart without file field": ({"files": {"other": SCENE}}, 400, "bad_request"),
    "multipart without boundary": (
        {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}},
        400,
        "bad_request",
    ),
    # Parsers that raised RecursionError / ValueError (500) before; pydantic's JSON parser bounds both.
    "json nested 100,000 deep": ({"content": nested_json(), "headers": JSON}, 400, "bad_request"),
    "json integer of 5,000 digits": ({"content": huge_int_json(), "headers": JSON}, 400, "bad_request"),
    "multipart boundary of 300 characters": (
        {"content": long_boundary_multipart()[0], "headers": {"content-type": long_boundary_multipart()[1]}},
        400,
        "bad_request",
    ),
    "two files to /predict": ({"files": [("file", SCENE), ("file", SCENE)]}, 413, "too_many_files"),
    "header claims gigapixels": ({"files": {"file": png_header_only(100_000, 100_000)}}, 413, "too_many_pixels"),
    "max_faces zero": ({"files": {"file": SCENE}, "params": {"max_faces": 0}}, 422, "invalid_request"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_its_documented_status(client: httpx.Client, case: str) -> None:
    kwargs, status, code = BAD_REQUESTS[case]
    response = client.post("/predict", **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_a_real_decompression_bomb_is_refused_from_its_header(client: httpx.Client) -> None:
    bomb = encode(np.zeros((8000, 8000), np.uint8), ".png")  # 64 Mpixels in ~70 KB
    assert len(bomb) < 200_000
    response = client.post("/predict", files={"file": bomb})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_many_pixels"


def test_framework_errors_use_the_envelope(client: httpx.Client) -> None:
    assert client.get("/predict").json()["error"]["code"] == "method_not_allowed"
    assert client.get("/nowhere").json()["error"]["code"] == "not_found"


def test_service_still_answers_after_the_corpus(client: httpx.Client) -> None:
    for kwargs, _, _ in BAD_REQUESTS.values():
        assert client.post("/predict", **kwargs).status_code < 500
    assert len(client.post("/predict", files={"file": SCENE}).json()["faces"]) == 3


@pytest.mark.parametrize(
    "variant",
    ["grey jpeg", "rgba png", "16-bit png", "16-bit grey png", "exif rotated"],
)
def test_image_layouts_are_all_understood(client: httpx.Client, variant: str) -> None:
    colour = read("scenes/scene_0000.jpg")
    data = {
        "grey jpeg": lambda: encode(cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY), ".jpg"),
        "rgba png": lambda: encode(cv2.cvtColor(colour, cv2.COLOR_BGR2BGRA), ".png"),
        "16-bit png": lambda: encode(colour.astype(np.uint16) * 257, ".png"),
        "16-bit grey png": lambda: encode(cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257, ".png"),
        # Stored rotated 90 degrees clockwise, tagged "rotate back" (orientation 8): upright once honoured.
        "exif rotated": lambda: with_exif_orientation(encode(cv2.rotate(colour, cv2.ROTATE_90_CLOCKWISE), ".jpg"), 8),
    }[variant]()
    body = client.post("/predict", files={"file": data}).json()
    assert body["image"] == {"width": 640, "height": 480}
    assert len(body["faces"]) == 3


@pytest.fixture(scope="module")
def strict_url(live_server: Callable[..., Any]) -> Iterator[str]:
    with live_server(**STRICT) as url:
        yield url


def test_api_keys_bearer_or_header_and_health_stays_open(strict_url: str) -> None:
    with httpx.Client(base_url=strict_url, timeout=30) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        missing = http.get("/model")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert http.get("/model", headers={"X-API-Key": "key-three"}).status_code == 401
        assert http.get("/model", headers={"Authorization": "Bearer key-one"}).status_code == 200
        assert http.get("/metrics", headers=KEY).status_code == 200
        assert http.post("/predict", files={"file": SCENE}).status_code == 401
        assert http.post("/predict", files={"file": SCENE}, headers=KEY).status_code == 200


def test_upload_limits(strict_url: str) -> None:
    big = SCENE * 5  # ~150 KB > max_upload_bytes=100_000
    with httpx.Client(base_url=strict_url, timeout=30, headers=KEY) as http:
        multipart = http.post("/predict", files={"file": big})
        assert multipart.status_code == 413 and multipart.json()["error"]["code"] == "too_large"
        as_json = http.post("/predict", json={"image": base64.b64encode(big).decode()})
        assert as_json.status_code == 413
        three = [("files", SCENE[:10]), ("files", SCENE[:10]), ("files", SCENE[:10])]
        batch = http.post("/predict/batch", files=three)
        assert batch.status_code == 413 and batch.json()["error"]["code"] == "too_many_files"


def test_cors_closed_by_default_open_for_configured_origins(client: httpx.Client, strict_url: str) -> None:
    preflight = {"Origin": "http://allowed.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/predict", headers=preflight).headers
    with httpx.Client(base_url=strict_url, timeout=30) as http:
        allowed = http.options("/predict", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "http://allowed.example"
        other = http.options("/predict", headers={**preflight, "Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_full_queue_answers_503_with_retry_after(strict_url: str) -> None:
    """max_concurrent_images=1: of 12 simultaneous requests some are refused at once, none fails otherwise."""

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=strict_url, timeout=30, headers=KEY) as http:
            return http.post("/predict", files={"file": SCENE})

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(one, range(12)))
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses, statuses
    refused = next(response for response in responses if response.status_code == 503)
    assert refused.json()["error"]["code"] == "overloaded"
    assert int(refused.headers["retry-after"]) >= 0


def test_a_stalled_upload_times_out_with_504(strict_url: str) -> None:
    def slowly() -> Iterator[bytes]:
        yield SCENE[:1000]
        time.sleep(1.5)  # request_timeout_s=1.0 on this server
        yield SCENE[1000:]

    with httpx.Client(base_url=strict_url, timeout=30, headers=KEY) as http:
        response = http.post("/predict", content=slowly(), headers={"content-type": "application/json"})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"


def test_no_image_is_written_to_disk_or_logged(
    strict_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    payload = base64.b64encode(SCENE).decode()
    with caplog.at_level(logging.INFO), httpx.Client(base_url=strict_url, timeout=30, headers=KEY) as http:
        http.post("/predict", files={"file": ("private-name.jpg", SCENE)}, headers={"X-Request-ID": "trace-me"})
        http.post("/predict", json={"image": payload})
    assert list(tmp_path.iterdir()) == []
    access = [record for record in caplog.records if record.name == "deepfer.access"]
    assert any(getattr(record, "request_id", None) == "trace-me" for record in access)
    logged = caplog.text + " ".join(str(record.__dict__) for record in caplog.records)
    assert "private-name" not in logged and payload[:40] not in logged


def test_the_body_limit_is_enforced_while_streaming() -> None:
    """The reader stops pulling chunks as soon as the limit is crossed; it never reads the rest."""
    head = b'--abc\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    chunk = b"x" * 65536
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        body = head + chunk if pulled == 1 else chunk
        return {"type": "http.request", "body": body, "more_body": pulled < 10_000}  # 655 MB if read to the end

    async def read() -> None:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/predict",
            "headers": [(b"content-type", b"multipart/form-data; boundary=abc")],
        }
        await read_images(
            Request(scope, receive), field_name="file", max_upload_bytes=200_000, max_files=1, max_fields=32
        )

    with pytest.raises(TooLarge):
        asyncio.run(read())
    assert pulled <= 5
