"""How the pipeline uses the cores: the locate stage (decode + detect + align) runs in worker processes (or, with
detect_processes=0, threads) below the batcher and the event loop, and only it does; a worker that dies costs
the requests it held a 503, never the service; OpenCV runs with the configured number of threads."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest

from deepfer.engine.workers import lower_priority
from tests.imaging import DATA

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux behaviour")


def thread_nice_values() -> list[int]:
    """The nice value of every thread of this process (field 19 of /proc/self/task/TID/stat)."""
    values = []
    for task in Path("/proc/self/task").iterdir():
        stat = (task / "stat").read_text()
        values.append(int(stat.rsplit(")", 1)[1].split()[16]))
    return values


@linux_only
def test_lower_thread_priority_renices_only_the_calling_thread() -> None:
    main_before = os.getpriority(os.PRIO_PROCESS, 0)
    seen: dict[str, int] = {}

    def worker() -> None:
        lower_priority(3, threading.get_native_id)
        seen["worker"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["worker"] == min(19, main_before + 3)
    assert os.getpriority(os.PRIO_PROCESS, 0) == main_before


@linux_only
def test_a_served_request_runs_on_lowered_pipeline_threads(live_server: Callable[..., Any]) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    if base + 3 > 19:
        pytest.skip(f"the tests already run at nice {base}: no room below")
    # The tests' servers run in this process; 3 tells these threads apart from the default servers' 5.
    with live_server(pipeline_nice=3, pipeline_threads=2, detect_processes=0) as url:
        response = httpx.post(
            f"{url}/predict", files={"file": (DATA / "scenes" / "scene_0000.jpg").read_bytes()}, timeout=30
        )
        assert response.status_code == 200
        lowered = thread_nice_values().count(base + 3)
    assert 1 <= lowered <= 2
    assert os.getpriority(os.PRIO_PROCESS, 0) == base


def worker_processes() -> dict[int, int]:
    """This process's spawned multiprocessing children (the tests' servers run here): pid -> nice value."""
    children = []
    for task in Path("/proc/self/task").iterdir():
        try:
            children += (task / "children").read_text().split()
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
    workers = {}
    for pid in children:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        if b"multiprocessing.spawn" in command:
            workers[int(pid)] = int(stat.rsplit(")", 1)[1].split()[16])
    return workers


def scene() -> bytes:
    return (DATA / "scenes" / "scene_0000.jpg").read_bytes()


@linux_only
def test_the_locate_stage_runs_in_lowered_worker_processes(live_server: Callable[..., Any]) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    if base + 3 > 19:
        pytest.skip(f"the tests already run at nice {base}: no room below")
    before = set(worker_processes())
    with live_server(pipeline_nice=3, detect_processes=2) as url:
        assert httpx.post(f"{url}/predict", files={"file": scene()}, timeout=30).status_code == 200
        started = {pid: nice for pid, nice in worker_processes().items() if pid not in before}
        assert len(started) == 2
        assert set(started.values()) == {base + 3}
        assert base + 3 not in thread_nice_values()  # nothing in the serving process runs niced
    assert not set(worker_processes()) & set(started)  # the workers end with the server


@linux_only
def test_a_killed_worker_costs_a_503_and_the_next_requests_are_served(live_server: Callable[..., Any]) -> None:
    before = set(worker_processes())
    with live_server(detect_processes=2) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("/predict", files={"file": scene()}).status_code == 200
        victims = [pid for pid in worker_processes() if pid not in before]
        os.kill(victims[0], signal.SIGKILL)
        answers = [http.post("/predict", files={"file": scene()}) for _ in range(4)]
        failed = [answer for answer in answers if answer.status_code != 200]
        for answer in failed:
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "worker_lost"
            assert answer.headers["Retry-After"]
        assert len(failed) <= 1 and answers[-1].status_code == 200
        assert http.get("/readyz").status_code == 200


def test_the_service_sets_opencv_threads(live_server: Callable[..., Any]) -> None:
    before = cv2.getNumThreads()
    try:
        # 3 is neither OpenCV's default here nor the service's, so only the setting can have put it there.
        with live_server(opencv_threads=3) as url:
            assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
            assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)  # the tests' servers share this process
