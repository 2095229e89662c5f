"""Model reload without downtime, against a real server under load: POST /admin/reload and SIGHUP.

The served file is a copy in a temporary folder, replaced as a customer would replace a mounted model: by a
copy of the float32 file with another version in its metadata, then by a truncated file. Load runs throughout,
and not one request may fail.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import onnx
import pytest

from deepfer.settings import MODELS_DIR
from tests.deploy.helpers import running_replicas, wait_until
from tests.imaging import DATA
from tests.onnx_models import tiny_classifier
from tests.servers import REPO

SCENE = (DATA / "scenes" / "scene_0000.jpg").read_bytes()
TOKEN = "reload-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
NEW_VERSION = "v3.1-customer"


def write_retagged(source: Path, target: Path, version: str) -> None:
    """``source`` with another version in its metadata, written beside the target and moved in atomically."""
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key.endswith("version"):
            prop.value = version
    staging = target.with_suffix(".tmp")
    onnx.save(model, str(staging))
    staging.replace(target)


def load(url: str, stop: threading.Event, outcomes: list[tuple[int, str]], clients: int = 6) -> list[threading.Thread]:
    """``clients`` threads posting the scene until ``stop``; each answer is (status, model version)."""

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                answer = http.post("/predict", files={"file": SCENE})
                version = answer.json()["model"]["version"] if answer.status_code == 200 else answer.text
                outcomes.append((answer.status_code, version))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    return threads


def served_version(url: str) -> str:
    version: str = httpx.get(f"{url}/model", timeout=10).json()["version"]
    return version


def model_info_sample(url: str) -> str:
    lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
    (line,) = [line for line in lines if line.startswith("deepfer_model_info{")]
    return line


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    path = tmp_path / "emotion.onnx"
    shutil.copyfile(MODELS_DIR / "emotion-int8.onnx", path)
    return path


@pytest.mark.parametrize("processes", [0, 2], ids=["threads", "processes"])
def test_reload_under_load_swaps_without_a_failed_request(
    live_server: Callable[..., Any], model_copy: Path, processes: int
) -> None:
    with live_server(classifier_path=model_copy, admin_token=TOKEN, detect_processes=processes) as url:
        old = httpx.get(f"{url}/model").json()
        stop, outcomes = threading.Event(), []
        threads = load(url, stop, outcomes)
        try:
            time.sleep(1.0)
            write_retagged(MODELS_DIR / "emotion.onnx", model_copy, NEW_VERSION)
            started = time.perf_counter()
            answer = httpx.post(f"{url}/admin/reload", headers=ADMIN, timeout=60)
            swap_s = time.perf_counter() - started
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == NEW_VERSION
            served_after_swap = len(outcomes)
            time.sleep(1.0)

            model_copy.write_bytes(model_copy.read_bytes()[:5000])  # a broken file: truncated mid-copy
            rejected = httpx.post(f"{url}/admin/reload", headers=ADMIN, timeout=60)
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join()

        statuses = Counter(status for status, _ in outcomes)
        versions = Counter(version for _, version in outcomes)
        print(f"\nreload under load: {statuses}, {versions}, swap call {swap_s:.2f} s")
        assert statuses == {200: len(outcomes)}, "a request failed during the swap"
        assert set(versions) == {old["version"], NEW_VERSION}
        # Once the swap call has returned, every new request is answered by the new model.
        assert {version for _, version in outcomes[served_after_swap + 6 :]} == {NEW_VERSION}

        assert rejected.status_code == 422
        assert rejected.json()["error"]["code"] == "model_rejected"
        assert str(model_copy) in rejected.json()["error"]["message"]
        described = httpx.get(f"{url}/model").json()
        assert (described["version"], described["sha256"]) != (old["version"], old["sha256"])
        assert described["version"] == NEW_VERSION
        assert f'sha256="{described["sha256"]}"' in model_info_sample(url)
        assert f'version="{NEW_VERSION}"' in model_info_sample(url)
        metrics = httpx.get(f"{url}/metrics").text
        assert 'deepfer_model_reloads_total{outcome="ok"} 1.0' in metrics
        assert 'deepfer_model_reloads_total{outcome="rejected"} 1.0' in metrics
        assert httpx.post(f"{url}/predict", files={"file": SCENE}).json()["model"]["version"] == NEW_VERSION


# A model that loads and meets every shape of the contract, yet answers NaN: for every face, or for blank ones only.
NAN_MODELS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "NaN weights": (lambda p: tiny_classifier(p, diverged=True), "black, grey, white, noise, gradient"),
    "NaN on a blank face": (lambda p: tiny_classifier(p, standardised=True), "black, grey, white"),
}


def test_a_reload_to_a_model_that_outputs_nan_is_refused_and_the_old_model_serves_on(
    live_server: Callable[..., Any], model_copy: Path, tmp_path: Path
) -> None:
    with (
        live_server(classifier_path=model_copy, admin_token=TOKEN) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        before = http.post("/predict", files={"file": SCENE}).json()
        for case, (make, canary_faces) in NAN_MODELS.items():
            make(tmp_path / "staged.onnx").replace(model_copy)  # moved in whole, as a deployment swaps a file
            answer = http.post("/admin/reload", headers=ADMIN)
            assert answer.status_code == 422, (case, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "model_rejected", case
            assert str(model_copy) in error["message"], error
            assert f"outputs NaN or infinity for the canary faces {canary_faces}" in error["message"], error
            assert "still serving the previous model" in error["message"], error

            after = http.post("/predict", files={"file": SCENE}).json()
            assert after["model"] == before["model"], case
            assert [face["emotion"] for face in after["faces"]] == [face["emotion"] for face in before["faces"]]
            for new, old in zip(after["faces"], before["faces"], strict=True):
                assert new["probabilities"] == pytest.approx(old["probabilities"], abs=1e-6), case
        assert http.get("/model").json()["sha256"] == before["model"]["sha256"]
        assert 'deepfer_model_reloads_total{outcome="rejected"} 2.0' in http.get("/metrics").text


def test_memory_stays_flat_over_30_reloads() -> None:
    """Each reload used to leave its retired models resident (a reference cycle through the stopped batcher kept
    them until a full garbage collection) and the freed memory in glibc's arenas: 5.8 MB more RSS per reload, 157
    MB after 30. Run as the benchmark runs (``python -m bench.reload_memory``, 100 reloads by default) against
    the service it starts on 127.0.0.1, with 30 reloads and the committed scenes."""
    command = [sys.executable, "-m", "bench.reload_memory", "--reloads", "30", "--scenes", str(DATA / "scenes")]
    done = subprocess.run(
        [*command, "--max-growth-mb", "25", "--print-every", "10"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(done.stdout)
    slope = re.search(r"slope ([+-]?[0-9.]+) MB per reload", done.stdout)
    assert slope is not None, done.stdout + done.stderr[-2000:]
    # exit 1: growth after the first reload reached 25 MB (issue 25's bound is 50 MB after 100 reloads, measured
    # by the benchmark on a quiet machine: +0.7 MB).
    assert done.returncode == 0, done.stdout
    # With requests between reloads on a loaded machine the allocator drifts by up to ~0.6 MB per reload with no
    # leak (seen under a parallel test run); the leak this guards against grew 5.9 MB at every reload.
    assert float(slope.group(1)) < 1.5, done.stdout


def test_admin_route_needs_the_admin_token(live_server: Callable[..., Any]) -> None:
    with live_server(api_keys=["client-key"]) as url:
        assert httpx.post(f"{url}/admin/reload", headers=ADMIN).json()["error"]["code"] == "forbidden"
    with live_server(api_keys=["client-key"], admin_token=TOKEN) as url:
        client = {"Authorization": "Bearer client-key"}
        assert httpx.post(f"{url}/admin/reload", headers=client).status_code == 401
        assert httpx.post(f"{url}/admin/reload").status_code == 401


def test_sighup_reloads_a_serving_process(model_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The signal path, in a real ``deepfer serve`` process (a server in a thread cannot own signals)."""
    monkeypatch.setenv("DEEPFER_CLASSIFIER_PATH", str(model_copy))
    with running_replicas(1, tmp_path) as (replica,):
        write_retagged(MODELS_DIR / "emotion.onnx", model_copy, NEW_VERSION)
        replica.process.send_signal(signal.SIGHUP)
        wait_until(lambda: served_version(replica.url) == NEW_VERSION, 30, "SIGHUP to reload the model")
        assert replica.process.poll() is None
