"""deepfer.client against real HTTP: the live service for answers, a tiny scripted server for 503s.

The scripted server is a real ``http.server`` on 127.0.0.1 that answers from a list (503s, then a 200 whose body
is a real answer of the service), so retry timing is measured on the wire rather than on a mocked transport.
"""

from __future__ import annotations

import asyncio
import itertools
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
from deepfer.http.schemas import PredictResponse
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
    body = answers[SCENES[1].name].model_dump_json().encode()
    retry_at = formatdate(time.time() + 2, usegmt=True)  # whole seconds: the wait is between 1 and 2 s

    async def predict() -> PredictResponse:
        async with AsyncClient(url) as client:
            return await client.predict(SCENES[1])

    with scripted_server([overloaded(retry_at), (200, {}, body)]) as (url, arrivals):
        got = asyncio.run(predict())
    assert_same_answer(got, answers[SCENES[1].name])
    assert len(arrivals) == 2
    assert 0.9 <= arrivals[1] - arrivals[0] < 3.0
