"""Model reload without downtime, against a real server under load: POST /admin/reload and SIGHUP.

The served file is a copy in a temporary folder, replaced as a customer would replace a mounted model: by a
copy of the float32 file with another version in its metadata, then by a truncated file. Load runs throughout,
and not one request may fail.
"""

from __future__ import annotations

import shutil
import signal
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


def test_reload_under_load_swaps_without_a_failed_request(live_server: Callable[..., Any], model_copy: Path) -> None:
    with live_server(classifier_path=model_copy, admin_token=TOKEN) as url:
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
