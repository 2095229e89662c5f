"""Faults a deployment will meet: SIGTERM in the middle of load, a burst that fills the inference queue, and a
model file that is truncated, missing or breaks the ONNX contract.

``tests/cli/test_cli.py`` already shows a request whose upload is still arriving at SIGTERM answered, one the drain
runs out of time for answered 503, and an empty, garbage or missing classifier file refusing to start. Here the
SIGTERM case runs under continuous load from many clients and accounts for every request by its ``X-Request-ID``
against the server's own access log, so "no accepted request was lost" is checked request by request, not just for
the few that were certainly in flight; the queue case fills the batcher's face queue (``queue_size``), the path
``tests/http/test_bad_input.py``'s ``max_concurrent_images`` test does not reach; and the model cases are a
truncated copy of the real model and small ONNX graphs built to break one clause of the contract each.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from deepfer.contract import LABELS
from deepfer.engine.classifier import EmotionClassifier
from deepfer.errors import ModelLoadError
from deepfer.settings import Settings
from tests.imaging import DATA
from tests.onnx_models import tiny_classifier
from tests.servers import REPO, deepfer_serve, free_port, wait_ready

SCENE = (DATA / "scenes" / "scene_0000.jpg").read_bytes()  # 640 x 480, three faces
SCENE_FACES = 3
GRACEFUL_SHUTDOWN_S = 15.0


@dataclass(frozen=True)
class Outcome:
    """One request as the client saw it: a status, or the transport error that ended it."""

    request_id: str
    sent_s: float
    done_s: float
    status: int | None = None
    error: type[httpx.TransportError] | None = None


def served_requests(log: Path, prefix: str) -> dict[str, int]:
    """request id -> status, for every request with our id prefix that the server's access log says it handled
    (the readiness polls carry server-made ids and are left out)."""
    served = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("logger") == "deepfer.access" and entry["request_id"].startswith(prefix):
            served[entry["request_id"]] = entry["status"]
    return served


def test_sigterm_under_load_loses_no_accepted_request(tmp_path: Path) -> None:
    """Sixteen clients send scenes back to back on fresh connections; SIGTERM lands once the load is steady.

    Accepted means the server started handling the request (it is in the access log). Every accepted request
    must reach its client with the status the server logged, and every response must be a 200 (503 would be
    a clean refusal, but with default limits none is expected). A client may see its connection refused or
    closed only for a request the server never accepted: that is the listener closing, which a client retries.
    """
    port, log = free_port(), tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    env = {
        "DEEPFER_ACCESS_LOG": "true",
        "DEEPFER_LOG_LEVEL": "info",
        "DEEPFER_GRACEFUL_SHUTDOWN_S": str(GRACEFUL_SHUTDOWN_S),
    }
    clients, per_client_cap, load_cap_s = 16, 40, 60.0
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    with deepfer_serve(port, env, log) as server:
        wait_ready(url, server)
        started = time.monotonic()

        def client(number: int) -> None:
            """New connection per request (what a fleet of short-lived callers does) until the server is gone."""
            for sequence in range(per_client_cap):
                request_id = f"fault-{number}-{sequence}"
                sent = time.monotonic()
                try:
                    response = httpx.post(
                        f"{url}/predict", files={"file": SCENE}, headers={"X-Request-ID": request_id}, timeout=30
                    )
                    outcome = Outcome(request_id, sent, time.monotonic(), status=response.status_code)
                except httpx.TransportError as error:
                    outcome = Outcome(request_id, sent, time.monotonic(), error=type(error))
                with lock:
                    outcomes.append(outcome)
                if outcome.error is httpx.ConnectError or time.monotonic() - started > load_cap_s:
                    return

        with ThreadPoolExecutor(max_workers=clients) as pool:
            running = [pool.submit(client, number) for number in range(clients)]
            while len(outcomes) < 2 * clients and time.monotonic() - started < load_cap_s:
                time.sleep(0.05)  # steady load: every client has had at least one answer, on average two
            terminated_at = time.monotonic()
            server.send_signal(signal.SIGTERM)
            for future in running:
                future.result()
        server.wait(timeout=GRACEFUL_SHUTDOWN_S + 10)
        exited_after_s = time.monotonic() - terminated_at

    served = served_requests(log, "fault-")
    answered = {outcome.request_id: outcome.status for outcome in outcomes if outcome.status is not None}
    lost = {request_id: status for request_id, status in served.items() if answered.get(request_id) != status}
    assert not lost, f"accepted by the server but not answered as logged: {lost}"
    assert set(answered.values()) <= {200, 503}, sorted(answered.values())
    cut_off = [outcome for outcome in outcomes if outcome.error is not None and outcome.request_id in served]
    assert not cut_off, cut_off
    drained = [o for o in outcomes if o.status == 200 and o.sent_s < terminated_at < o.done_s]
    assert drained, "no request was in flight at SIGTERM, so the test proved nothing; raise the load"
    assert server.returncode == 0, server.returncode  # drained: a clean exit, not "killed by SIGTERM"
    assert exited_after_s < GRACEFUL_SHUTDOWN_S, f"took {exited_after_s:.1f} s to drain and exit"


def predict_request_bytes(port: int) -> bytes:
    """POST /predict with the scene, as raw HTTP/1.1 bytes (httpx builds the multipart body)."""
    request = httpx.Request("POST", f"http://127.0.0.1:{port}/predict", files={"file": SCENE})
    head = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
    return f"POST /predict HTTP/1.1\r\n{head}\r\n".encode() + request.read()


def test_a_connection_made_before_the_drain_gets_its_request_answered(tmp_path: Path) -> None:
    """The race behind a request lost at SIGTERM, made deterministic: a client connects, the drain begins (the
    listener closes), then its request arrives, as it does when it was still on the network or unread in the
    socket of a busy server. uvicorn alone closes such a connection as idle, resetting the client; it must be
    answered, with ``connection: close``, before the process exits 0."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with deepfer_serve(port, {"DEEPFER_ACCESS_LOG": "false"}, tmp_path / "serve.log") as server:
        wait_ready(url, server)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as early:
            time.sleep(0.3)  # accepted by the server's loop
            server.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while True:  # the drain has begun once the listener refuses new connections
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except ConnectionRefusedError:
                    break
                assert time.monotonic() < deadline, "the listener never closed after SIGTERM"
                time.sleep(0.02)
            answer = b""
            try:
                early.sendall(predict_request_bytes(port))
                while data := early.recv(65536):
                    answer += data
            except (BrokenPipeError, ConnectionResetError):
                pass
        server.wait(timeout=30)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), f"the request sent after the drain began got {answer[:100]!r}"
    assert b"connection: close" in head.lower()
    assert len(json.loads(body)["faces"]) == SCENE_FACES
    assert server.returncode == 0


# A queue of four faces holds one three-face scene: a second concurrent one finds the queue full.
QUEUE_LIMITS = {"queue_size": 4, "max_faces": 4, "max_batch": 4, "max_concurrent_images": 64, "request_timeout_s": 20.0}


def test_a_full_face_queue_answers_503_with_retry_after_then_recovers(live_server: Callable[..., Any]) -> None:
    """A burst of 32 clients x 3 requests against ``queue_size=4``: the batcher sheds load with 503 at once,
    batch requests report per-file ``overloaded`` entries, nothing times out or fails otherwise, and the
    server then answers a valid request exactly as before."""

    def one(index: int) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30) as http:
            if index % 4 == 0:
                return http.post("/predict/batch", files=[("files", SCENE), ("files", SCENE)])
            return http.post("/predict", files={"file": SCENE})

    with live_server(**QUEUE_LIMITS) as url, ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(one, range(96)))
        statuses = sorted({response.status_code for response in responses})
        assert set(statuses) <= {200, 503}, statuses
        refused = [response for response in responses if response.status_code == 503]
        assert refused, "the burst never filled the queue; the test proved nothing"
        for response in refused:
            assert response.json()["error"]["code"] == "overloaded"
            assert "queue" in response.json()["error"]["message"]
            assert int(response.headers["retry-after"]) >= 0
        batch_items = [
            item for r in responses if r.status_code == 200 and "results" in r.json() for item in r.json()["results"]
        ]
        for item in batch_items:
            assert item["result"] is not None or item["error"]["code"] == "overloaded", item

        with httpx.Client(base_url=url, timeout=30) as http:
            assert http.get("/readyz").status_code == 200
            assert len(http.post("/predict", files={"file": SCENE}).json()["faces"]) == SCENE_FACES
            metrics = http.get("/metrics").text
    shed = next(line for line in metrics.splitlines() if line.startswith("deepfer_overloaded_total"))
    assert float(shed.split()[-1]) >= len(refused)


def truncated_real_model(path: Path) -> Path:
    """The shipped classifier cut off halfway, as an interrupted copy or download leaves it."""
    data = Settings().classifier_path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# name -> (setting it goes into, how to make the file, words the one-line error must contain)
BROKEN_MODELS: dict[str, tuple[str, Callable[[Path], Path], str]] = {
    "truncated copy": ("classifier_path", truncated_real_model, "cannot load model"),
    "wrong input shape": (
        "classifier_path",
        lambda p: tiny_classifier(p, side=64),
        "input must be float32 [N,48,48,1]",
    ),
    "no labels metadata": ("classifier_path", lambda p: tiny_classifier(p, labels=None), "'labels' missing"),
    "labels reordered": ("classifier_path", lambda p: tiny_classifier(p, labels=LABELS[::-1]), "differ from"),
    "no softmax": ("classifier_path", lambda p: tiny_classifier(p, softmax=False), "not softmax probabilities"),
    "NaN weights": ("classifier_path", lambda p: tiny_classifier(p, diverged=True), "NaN or infinity"),
    "NaN on a blank face": (
        "classifier_path",
        lambda p: tiny_classifier(p, standardised=True),
        "NaN or infinity for the canary faces black, grey, white",
    ),
    "missing detector": ("detector_path", lambda p: p, "model file not found"),
    "classifier as detector": ("detector_path", tiny_classifier, "is not a YuNet detector"),
}


def test_the_tiny_model_itself_meets_the_contract(tmp_path: Path) -> None:
    """Control for the cases below: each breaks only the clause it names, not the builder's own mistakes."""
    classifier = EmotionClassifier(tiny_classifier(tmp_path / "tiny.onnx"))
    probabilities = classifier.run(np.zeros((2, 48, 48, 1), np.float32))
    assert probabilities.shape == (2, len(LABELS))


@pytest.mark.parametrize("case", list(BROKEN_MODELS))
def test_a_broken_model_stops_deepfer_serve_with_one_readable_line(tmp_path: Path, case: str) -> None:
    setting, make, reason = BROKEN_MODELS[case]
    model = make(tmp_path / f"{case.replace(' ', '_')}.onnx")
    if setting == "classifier_path":
        with pytest.raises(ModelLoadError):
            EmotionClassifier(model)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "deepfer.cli", "serve", "--port", str(free_port())],
        cwd=REPO,
        env={**os.environ, f"DEEPFER_{setting.upper()}": str(model)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed_s = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("deepfer: cannot start:"), result.stderr
    assert str(model) in lines[0] and reason in lines[0], lines[0]
    assert result.stdout == ""
    # Fails before uvicorn binds the port or warms up: the cost is the imports and one model load.
    assert elapsed_s < 30, f"took {elapsed_s:.1f} s to refuse"
