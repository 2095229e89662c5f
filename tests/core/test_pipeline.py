"""How the pipeline uses the cores: its worker threads (decode + detect) run below the batcher and the event loop,
and only they do; OpenCV runs with the configured number of threads."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest

from deepfer.pipeline import _lower_thread_priority
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
        _lower_thread_priority(3)
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
    with live_server(pipeline_nice=3, pipeline_threads=2) as url:
        response = httpx.post(
            f"{url}/predict", files={"file": (DATA / "scenes" / "scene_0000.jpg").read_bytes()}, timeout=30
        )
        assert response.status_code == 200
        lowered = thread_nice_values().count(base + 3)
    assert 1 <= lowered <= 2
    assert os.getpriority(os.PRIO_PROCESS, 0) == base


def test_the_service_sets_opencv_threads(live_server: Callable[..., Any]) -> None:
    before = cv2.getNumThreads()
    try:
        # 3 is neither OpenCV's default here nor the service's, so only the setting can have put it there.
        with live_server(opencv_threads=3) as url:
            assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
            assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)  # the tests' servers share this process
