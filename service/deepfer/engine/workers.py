"""Where the locate stage runs (``deepfer.engine.pipeline.locate``: decode -> detect -> align): threads or processes.

Decode -> detect -> align is most of the CPU an image costs, and all of it is native code that could run on
every core. On threads of the serving process (``ThreadLocator``, the default) it shares that process's GIL with
the event loop, the HTTP parsing and the batcher. In ``detect_processes`` worker processes (``ProcessLocator``)
each worker has its own detector and interpreter, while the serving process keeps the HTTP edge, the one
batcher (faces of every request still share classifier runs) and the one ``/metrics``. Which wins depends on
the machine: ``bench.ceiling`` says what the GIL costs (1 process x 2 threads against 2 x 1), ``bench.http_load``
what each layout serves; ``Settings.detect_processes`` has the figures behind the default.

The hand-off is the pool's pipe: a request's encoded bytes go in (tens of KB), crops and boxes come back (2.3 KB
a face), and stage times travel back with the answer, so the metrics are recorded where they are served. The
process layout measured about 5 ms more CPU per image than threads; shared memory for the bytes was not tried.

With processes, a worker that dies (a decoder crash on a hostile file, the OOM killer) breaks the pool: the
requests it held fail with ``WorkerLost`` (503, Retry-After), a fresh pool takes the next ones, and the service
serves on; with threads such a crash ends the replica.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

from deepfer.engine.detect import FaceDetector
from deepfer.errors import WorkerLost
from deepfer.settings import Settings

log = logging.getLogger("deepfer")
T = TypeVar("T")
Work = Callable[[FaceDetector, Settings], T]
"""What a worker runs: a picklable callable (a module-level function, or a ``functools.partial`` of one) given
the worker's detector and settings. ``deepfer.engine.pipeline`` hands in ``partial(locate, source, options)``."""


def load_detector(settings: Settings) -> FaceDetector:
    """The face detector as every locator runs it; ModelLoadError names the file when it cannot load."""
    return FaceDetector(
        settings.detector_path,
        score_threshold=settings.detection_score_threshold,
        nms_threshold=settings.detection_nms_threshold,
        max_side_px=settings.detection_max_side_px,
        provider=settings.execution_provider,
        # One thread per detection: images already run in parallel on the locator's threads or processes.
        intra_op_threads=1,
    )


def warm_detector(detector: FaceDetector) -> None:
    """One detection at a typical frame size, so the first request does not pay for ORT's lazy initialisation."""
    detector.detect(np.zeros((480, 640, 3), dtype=np.uint8))


class ThreadLocator:
    """The stage on ``pipeline_threads`` threads of this process, niced below the event loop and the batcher."""

    def __init__(self, detector: FaceDetector, settings: Settings) -> None:
        self._detector = detector
        self._settings = settings
        self._pool = ThreadPoolExecutor(
            max_workers=settings.pipeline_threads,
            thread_name_prefix="deepfer-pipeline",
            initializer=lower_priority,
            initargs=(settings.pipeline_nice, threading.get_native_id),
        )

    def submit(self, work: Work[T]) -> Future[T]:
        return self._pool.submit(work, self._detector, self._settings)

    def warm_up(self) -> None:
        warm_detector(self._detector)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class ProcessLocator:
    """The stage in ``detect_processes`` worker processes; see the module docstring for the hand-off and crashes."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._pool = self._start()

    def submit(self, work: Work[T]) -> Future[T]:
        """The answer's future; a lost worker's requests fail with ``WorkerLost`` and the pool is replaced."""
        pool = self._current()
        answer: Future[T] = Future()
        try:
            running = pool.submit(_run_in_worker, work)
        except BrokenProcessPool:
            self._replace(pool)
            answer.set_exception(WorkerLost("an image worker stopped; the pool is restarting"))
            return answer
        # Running from the start, so it cannot be cancelled: a request that times out leaves its work counted
        # against max_concurrent_images until a worker has finished it, as a thread's work is.
        answer.set_running_or_notify_cancel()
        running.add_done_callback(lambda done: self._forward(pool, done, answer))
        return answer

    def warm_up(self) -> None:
        """Start every worker now (the pool starts them on demand) and return once each has loaded its detector.

        A worker takes work only after its initializer has loaded and warmed the detector, so each answer of
        ``_worker_pid`` comes from a ready process; a few rounds meet every worker."""
        pool = self._current()
        ready: set[int] = set()
        for _ in range(20):
            ready |= {
                done.result(timeout=120)
                for done in [pool.submit(_worker_pid) for _ in range(self._settings.detect_processes)]
            }
            if len(ready) >= self._settings.detect_processes:
                return

    def close(self) -> None:
        self._current().shutdown(wait=True, cancel_futures=True)

    def _start(self) -> ProcessPoolExecutor:
        # spawn: a worker is a fresh interpreter that imports only the stage's modules, never a fork of a
        # process that runs an event loop and ORT's threads (fork there can inherit a held lock).
        return ProcessPoolExecutor(
            max_workers=self._settings.detect_processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self._settings.model_dump(mode="json"),),
        )

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:  # the first of the failed requests restarts it; the others find it done
                log.error("an image worker process ended unexpectedly; starting a new pool")
                self._pool = self._start()
        broken.shutdown(wait=False, cancel_futures=True)

    def _forward(self, pool: ProcessPoolExecutor, done: Future[T], answer: Future[T]) -> None:
        error = None if done.cancelled() else done.exception()
        if isinstance(error, BrokenProcessPool):
            self._replace(pool)
            error = WorkerLost("the image worker handling this request stopped; retry")
        if done.cancelled():  # the pool shut down before a worker took it
            answer.set_exception(WorkerLost("the image workers are shutting down"))
        elif error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(done.result())


Locator = ThreadLocator | ProcessLocator


def open_locator(settings: Settings, detector: FaceDetector | None = None) -> Locator:
    """The locator the settings ask for; the thread one uses ``detector`` when the caller already loaded it."""
    if settings.detect_processes:
        return ProcessLocator(settings)
    return ThreadLocator(detector or load_detector(settings), settings)


@dataclass
class _Worker:
    """What a worker process holds, set once by the pool's initializer."""

    settings: Settings | None = None
    detector: FaceDetector | None = None


_worker = _Worker()


def _start_worker(settings: dict[str, object]) -> None:
    _worker.settings = Settings.model_validate(settings)
    cv2.setNumThreads(_worker.settings.opencv_threads)
    lower_priority(_worker.settings.pipeline_nice, os.getpid)
    _worker.detector = load_detector(_worker.settings)
    warm_detector(_worker.detector)


def _run_in_worker(work: Work[T]) -> T:
    assert _worker.detector is not None and _worker.settings is not None, "the pool's initializer did not run"
    return work(_worker.detector, _worker.settings)


def _worker_pid() -> int:
    time.sleep(0.05)  # long enough that the other workers' calls go to the other workers
    return os.getpid()


def lower_priority(nice: int, who: Callable[[], int]) -> None:
    """Run this thread or process ``nice`` steps below the event loop and the batcher.

    Locating is the bulk of the CPU and waits in a FIFO queue anyway; the batcher and the event loop are short
    steps that every request passes through. At equal priority they queue behind detection for a core, and that
    wait made the p99 (docs/performance.md has the measurement). Linux only: other systems have no
    per-thread nice. A sandbox that forbids it costs the latency gain, never a request.
    """
    if not nice or not sys.platform.startswith("linux"):
        return
    target = who()
    try:
        # Relative to what it inherited: the process itself may already run niced.
        os.setpriority(os.PRIO_PROCESS, target, min(19, os.getpriority(os.PRIO_PROCESS, target) + nice))
    except OSError as error:
        log.warning("the locate stage keeps its priority: %s", error)
