"""The pipeline's worker threads: decode + detect runs below the batcher and the event loop, and only there."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from service.pipeline import _lower_thread_priority


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux behaviour")
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
