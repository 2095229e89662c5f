"""deepfer.client against real HTTP: the live service for answers, a tiny scripted server for 503s.

The scripted server is a real ``http.server`` on 127.0.0.1 that answers from a list (503s, then a 200 whose body
is a real answer of the service), so retry timing is measured on the wire rather than on a mocked transport.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import httpx
import pytest

from deepfer.client import AsyncClient, Client, DeepFERClientError, RetryPolicy
from deepfer.contract import LABELS
from deepfer.wire import BatchResponse, ModelResponse, PredictResponse, Readiness
from tests.imaging import DATA

SCENES = [DATA / "scenes" / "scene_0000.jpg", DATA / "scenes" / "scene_0002.jpg"]
API_KEY = "client-test-key"

Reply = tuple[int, dict[str, str], bytes]


def assert_same_answer(got: PredictResponse, expected: PredictResponse) -> None:
    """Same faces and boxes; probabilities equal up to float noise from different classifier batch sizes."""
    assert got.image == expected.image
    assert [face.box for face in got.faces] == [face.box for face in expected.faces]
    assert [face.emotion for face in got.faces] == [face.emotion for face in expected.faces]
    for ours, theirs in zip(got.faces, expected.faces, strict=True):
        assert ours.probabilities.model_dump() == pytest.approx(theirs.probabilities.model_dump(), abs=1e-5)


@pytest.fixture(scope="module")
def answers(server_url: str) -> dict[str, PredictResponse]:
    """The service's answer for each scene, fetched with plain httpx: what the client must reproduce."""
    replies = {
        path.name: httpx.post(f"{server_url}/predict", files={"file": path.read_bytes()}, timeout=30) for path in SCENES
    }
    return {name: PredictResponse.model_validate_json(reply.content) for name, reply in replies.items()}


class _ScriptedServer(ThreadingHTTPServer):
    script: list[Reply]
    arrivals: list[float]


class _ScriptedHandler(BaseHTTPRequestHandler):
    """Answers each POST with the next scripted reply; the last one repeats."""

    server: _ScriptedServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.arrivals.append(time.monotonic())
        status, headers, body = self.server.script.pop(0) if len(self.server.script) > 1 else self.server.script[0]
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        """GETs (``/readyz``, ``/model``) play the same script."""
        self.do_POST()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on arrivals, not on an access log."""


@contextmanager
def scripted_server(script: list[Reply]) -> Iterator[tuple[str, list[float]]]:
    """(base URL, arrival times) of a real HTTP server on 127.0.0.1 playing ``script``."""
    server = _ScriptedServer(("127.0.0.1", 0), _ScriptedHandler)
    server.script, server.arrivals = list(script), []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.arrivals
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def overloaded(retry_after: str) -> Reply:
    return 503, {"Retry-After": retry_after}, b'{"error": {"code": "overloaded", "message": "queue full"}}'


def test_path_bytes_and_array_get_the_services_answer(server_url: str, answers: dict[str, PredictResponse]) -> None:
    """All three input forms reach the same answer; an array goes losslessly, so its pixels are the file's."""
    scene = SCENES[0]
    with Client(server_url) as client:
        by_path = client.predict(scene)
        by_str = client.predict(str(scene))
        by_bytes = client.predict(scene.read_bytes())
        by_array = client.predict(cv2.imread(str(scene)))
    for got in (by_path, by_str, by_bytes, by_array):
        assert isinstance(got, PredictResponse)
        assert_same_answer(got, answers[scene.name])
    assert len(by_path.faces) >= 2


def test_options_reach_the_server(server_url: str) -> None:
    with Client(server_url) as client:
        whole = client.predict(SCENES[0], detect=False)
        one = client.predict(SCENES[0], max_faces=1)
    assert len(whole.faces) == 1
    assert whole.faces[0].detection_score is None
    assert (whole.faces[0].box.width, whole.faces[0].box.height) == (whole.image.width, whole.image.height)
    assert len(one.faces) == 1


def test_quality_options_reach_the_server(server_url: str) -> None:
    """min_score and min_sharpness travel as query parameters, from both clients and both routes."""

    async def confident_async() -> BatchResponse:
        async with AsyncClient(server_url) as client:
            return await client.predict_batch([SCENES[0]], min_score=0.9, min_sharpness=0)

    with Client(server_url) as client:
        confident = client.predict(SCENES[0], min_score=0.9)
        strict = client.predict(SCENES[0], min_sharpness=10_000)
    assert 0 < len(confident.faces) < 3
    assert all(face.detection_score is not None and face.detection_score >= 0.9 for face in confident.faces)
    assert strict.faces == []
    batched = asyncio.run(confident_async()).results[0].result
    assert batched is not None and [face.box for face in batched.faces] == [face.box for face in confident.faces]


def test_async_client_runs_concurrent_requests(server_url: str, answers: dict[str, PredictResponse]) -> None:
    async def predict_all() -> list[PredictResponse]:
        async with AsyncClient(server_url) as client:
            return list(await asyncio.gather(*(client.predict(path) for path in SCENES * 2)))

    for path, got in zip(SCENES * 2, asyncio.run(predict_all()), strict=True):
        assert_same_answer(got, answers[path.name])


def test_errors_carry_the_servers_status_and_code(server_url: str) -> None:
    with Client(server_url) as client, pytest.raises(DeepFERClientError) as caught:
        client.predict(b"this is not an image")
    assert (caught.value.status, caught.value.code) == (400, "bad_image")


def test_api_key_is_sent_as_x_api_key(live_server: Callable[..., Any]) -> None:
    with live_server(api_keys=[API_KEY]) as url:
        with Client(url) as anonymous, pytest.raises(DeepFERClientError) as caught:
            anonymous.predict(SCENES[0])
        assert (caught.value.status, caught.value.code) == (401, "unauthorized")
        with Client(url, api_key=API_KEY) as client:
            assert client.predict(SCENES[0]).faces
            assert client.predict_batch([SCENES[0]]).results[0].result is not None
            assert client.model().labels == list(LABELS)
        with Client(url) as anonymous:
            for call in (anonymous.model, lambda: anonymous.predict_batch([SCENES[0]])):
                with pytest.raises(DeepFERClientError) as caught:
                    call()
                assert caught.value.status == 401
            assert anonymous.ready().ready  # /readyz is open: load balancers probe it without a key


def test_503_is_retried_after_retry_after(answers: dict[str, PredictResponse]) -> None:
    """Two 503s with Retry-After: 1, then the answer: the client waits about a second each time and succeeds."""
    body = answers[SCENES[0].name].model_dump_json().encode()
    with scripted_server([overloaded("1"), overloaded("1"), (200, {}, body)]) as (url, arrivals), Client(url) as client:
        got = client.predict(SCENES[0])
    assert_same_answer(got, answers[SCENES[0].name])
    assert len(arrivals) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(0.9 <= gap < 3.0 for gap in gaps), gaps


def test_503_retries_are_bounded_and_long_waits_capped() -> None:
    """A server that says "retry in an hour" forever: a few capped waits, then the 503 is raised."""
    patient = RetryPolicy(retries=2, max_wait_s=0.2)
    with scripted_server([overloaded("3600")]) as (url, arrivals), Client(url, retry=patient) as client:
        started = time.monotonic()
        with pytest.raises(DeepFERClientError) as caught:
            client.predict(b"any bytes")
        elapsed = time.monotonic() - started
    assert (caught.value.status, caught.value.code) == (503, "overloaded")
    assert len(arrivals) == 3
    assert 0.4 <= elapsed < 3.0


def test_async_client_honours_an_http_date_retry_after(answers: dict[str, PredictResponse]) -> None:
    """The wait is measured against the date itself: the date is in whole seconds and the first request reaches the
    server some time after it is written, so a fixed bound raced the clock (a date 1.0x s ahead left under 0.9 s
    once the request took 0.1 s to arrive)."""
    body = answers[SCENES[1].name].model_dump_json().encode()
    retry_epoch = math.ceil(time.time()) + 2  # 2-3 s ahead
    wall_minus_monotonic = time.time() - time.monotonic()  # to read the arrivals (monotonic) on the date's clock

    async def predict() -> PredictResponse:
        async with AsyncClient(url) as client:
            return await client.predict(SCENES[1])

    with scripted_server([overloaded(formatdate(retry_epoch, usegmt=True)), (200, {}, body)]) as (url, arrivals):
        got = asyncio.run(predict())
    assert_same_answer(got, answers[SCENES[1].name])
    assert len(arrivals) == 2
    asked_s = retry_epoch - (arrivals[0] + wall_minus_monotonic)  # what the date asked for when the 503 was sent
    assert asked_s > 1.0, f"the first request took over a second to arrive ({asked_s:.2f} s were left)"
    assert asked_s - 0.05 <= arrivals[1] - arrivals[0] < asked_s + 1.5, (asked_s, arrivals)


def check_batch(batch: BatchResponse, answers: dict[str, PredictResponse]) -> None:
    """[scene 0 by path, scene 1 as bytes, not an image, scene 0 as an array]: entries in upload order, each the
    service's single-image answer, the bad file an error entry rather than a failed batch."""
    assert [item.index for item in batch.results] == [0, 1, 2, 3]
    for item, name in zip(batch.results, [SCENES[0].name, SCENES[1].name, None, SCENES[0].name], strict=True):
        if name is None:
            assert item.result is None and item.error is not None and item.error.code == "bad_image"
        else:
            assert item.error is None and item.result is not None
            assert_same_answer(item.result, answers[name])
    assert batch.results[0].filename == SCENES[0].name


def test_predict_batch_sync_and_async(server_url: str, answers: dict[str, PredictResponse]) -> None:
    images = [SCENES[0], SCENES[1].read_bytes(), b"this is not an image", cv2.imread(str(SCENES[0]))]
    with Client(server_url) as client:
        check_batch(client.predict_batch(images), answers)
        one = client.predict_batch([SCENES[0]], max_faces=1)
        assert one.results[0].result is not None and len(one.results[0].result.faces) == 1
        with pytest.raises(TypeError, match="use predict for one"):
            client.predict_batch(str(SCENES[0]))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="at least one"):
            client.predict_batch([])

    async def batch() -> BatchResponse:
        async with AsyncClient(server_url) as client:
            return await client.predict_batch(images)

    check_batch(asyncio.run(batch()), answers)


def test_model_and_ready_sync_and_async(server_url: str) -> None:
    """``model()`` is ``GET /model`` as a typed answer; ``ready()`` is ``GET /readyz``."""
    raw = httpx.get(f"{server_url}/model", timeout=30).json()
    with Client(server_url) as client:
        model, ready = client.model(), client.ready()

    async def both() -> tuple[ModelResponse, Readiness]:
        async with AsyncClient(server_url) as client:
            return await client.model(), await client.ready()

    for got_model, got_ready in ((model, ready), asyncio.run(both())):
        assert isinstance(got_model, ModelResponse)
        assert got_model.model_dump(mode="json") == raw
        assert got_model.labels == list(LABELS) and got_model.version and len(got_model.sha256) == 64
        assert got_ready == Readiness(ready=True, detail=got_ready.detail)


def test_not_ready_is_an_answer_and_is_not_retried() -> None:
    """/readyz's 503 (warming up, draining) is the answer ready() returns at once; a batch's 503 is retried."""
    body = Readiness(ready=False, detail="warming up").model_dump_json().encode()
    with scripted_server([(503, {"Retry-After": "1"}, body)]) as (url, arrivals), Client(url) as client:
        assert client.ready() == Readiness(ready=False, detail="warming up")
    assert len(arrivals) == 1

    async def ready() -> Readiness:
        async with AsyncClient(url) as client:
            return await client.ready()

    with scripted_server([(503, {}, body)]) as (url, arrivals):
        assert asyncio.run(ready()).ready is False
    assert len(arrivals) == 1

    # A 503 that is not a readiness answer (a proxy's page) is an error, as from any other call.
    proxy_page: Reply = (503, {"Content-Type": "text/html"}, b"<h1>busy</h1>")
    with scripted_server([proxy_page]) as (url, _), Client(url) as client, pytest.raises(DeepFERClientError) as caught:
        client.ready()
    assert caught.value.status == 503


def test_batch_503_is_retried_like_predict(answers: dict[str, PredictResponse]) -> None:
    body = BatchResponse.model_validate({"results": [{"index": 0, "result": answers[SCENES[0].name]}]})
    script = [overloaded("0.2"), (200, {}, body.model_dump_json().encode())]
    with scripted_server(script) as (url, arrivals), Client(url) as client:
        got = client.predict_batch([SCENES[0]])
    assert len(arrivals) == 2 and got.results[0].result is not None
    assert_same_answer(got.results[0].result, answers[SCENES[0].name])
