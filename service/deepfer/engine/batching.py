"""DynamicBatcher: faces from concurrent requests share one classifier run.

A request hands over its k faces and awaits their k probability rows. One worker task gathers waiting faces
until ``max_batch`` are queued or ``max_wait_ms`` has passed since the oldest arrived, runs the classifier once
on a dedicated thread (so the event loop keeps accepting requests meanwhile), and hands each request its rows.
While a run is in progress new faces queue up, so under load batches fill without waiting at all.

The queue is bounded in faces: when it is full ``classify`` raises ``Overloaded`` at once instead of letting
latency grow without limit. The batcher knows nothing about HTTP; the classifier knows nothing about asyncio.

Whatever a run raises (ONNX Runtime has its own exception types, which subclass neither RuntimeError nor
ValueError) fails that batch's requests only, and the worker goes on with the next batch. Should the worker itself
ever end, ``failure`` says why (readiness reports it) and every waiting and later request fails at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from deepfer.errors import Overloaded

RunBatch = Callable[[NDArray[np.float32]], NDArray[np.float32]]


@dataclass
class _Item:
    """One request's faces (k x 48 x 48 x 1 float32, k <= max_batch) and the future of its k x 7 rows."""

    faces: NDArray[np.float32]
    future: asyncio.Future[NDArray[np.float32]]
    enqueued_s: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Gathers faces into batches of at most ``max_batch``; see the module docstring for the policy."""

    def __init__(
        self,
        run: RunBatch,
        *,
        max_batch: int,
        max_wait_ms: float,
        queue_size: int,
        retry_after_s: int = 1,
        on_batch: Callable[[int], None] | None = None,
        on_queue_depth: Callable[[int], None] | None = None,
        on_wait: Callable[[float], None] | None = None,
        on_run: Callable[[float], None] | None = None,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000
        self._queue_size = queue_size
        self._retry_after_s = retry_after_s
        self._on_batch = on_batch or (lambda _: None)
        self._on_queue_depth = on_queue_depth or (lambda _: None)
        # Seconds each request's faces waited for their batch to start, and seconds per classifier run: the two
        # halves of a face's time in the classifier stage, which read very differently under load.
        self._on_wait = on_wait or (lambda _: None)
        self._on_run = on_run or (lambda _: None)
        self._pending: deque[_Item] = deque()
        self._queued_faces = 0
        self._arrived = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task[None] | None = None
        self._running: list[_Item] = []  # the batch in the classifier now
        self.failure: str | None = None  # why the worker ended, if it ever does before stop()

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepfer-classify")
        self._worker = asyncio.create_task(self._work(), name="deepfer-batcher")
        self._worker.add_done_callback(self._worker_ended)

    async def stop(self) -> None:
        """Finish what is queued (uvicorn has already drained the requests that own it), then stop."""
        while self._pending and self.failure is None:
            await asyncio.sleep(self._max_wait_s or 0.001)
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            # The cancelled task keeps its CancelledError, whose traceback holds the worker's frames and so this
            # batcher, its classifier and the ONNX session: a cycle that only the garbage collector's rare full pass
            # would free, so retired models stayed resident for dozens of reloads (figures: pipeline's memory trim).
            self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def classify(self, faces: NDArray[np.float32]) -> NDArray[np.float32]:
        """k x 48 x 48 x 1 float32 -> k x 7 float32, batched with other callers' faces; Overloaded when full."""
        if len(faces) == 0:
            return self._run(faces)  # nothing to batch; the classifier answers 0 x 7 without inference
        if self._worker is None:
            raise RuntimeError("DynamicBatcher is not running: start() was not awaited, or stop() was")
        if self.failure is not None:
            raise RuntimeError(self.failure)
        if self._queued_faces + len(faces) > self._queue_size:
            raise Overloaded(
                f"inference queue full ({self._queued_faces} faces waiting, queue_size={self._queue_size})",
                self._retry_after_s,
            )
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(faces), self._max_batch):
            item = _Item(faces[start : start + self._max_batch], loop.create_future())
            self._pending.append(item)
            self._queued_faces += len(item.faces)
            futures.append(item.future)
        self._on_queue_depth(self._queued_faces)
        self._arrived.set()
        return np.concatenate(await asyncio.gather(*futures))

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_batch()
            self._running = self._take_batch()
            if self._running:
                await self._run_batch(loop, self._running)
            self._running = []

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Item]) -> None:
        """One classifier run on a worker thread; each request gets its rows, or the run's exception."""
        faces = np.concatenate([item.faces for item in batch])
        self._on_batch(len(faces))
        started_s = time.monotonic()
        for item in batch:
            self._on_wait(started_s - item.enqueued_s)
        try:
            probabilities = await loop.run_in_executor(self._executor, self._run, faces)
        except Exception as error:  # the run's failure belongs to its batch's requests, never to the worker
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        finally:
            self._on_run(time.monotonic() - started_s)
        start = 0
        for item in batch:
            rows = probabilities[start : start + len(item.faces)]
            start += len(item.faces)
            if not item.future.done():
                item.future.set_result(rows)

    def _worker_ended(self, worker: asyncio.Task[None]) -> None:
        """A worker ended by anything but stop() (a bug in this module): fail what waits, and say so from now on."""
        if worker.cancelled():
            return
        self.failure = f"classifier worker stopped: {worker.exception()!r}"
        for item in [*self._running, *self._pending]:
            if not item.future.done():
                item.future.set_exception(RuntimeError(self.failure))
        self._pending.clear()
        self._queued_faces = 0

    async def _wait_for_batch(self) -> None:
        """Return once a full batch is queued or the oldest face has waited ``max_wait_ms``."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._pending[0].enqueued_s + self._max_wait_s
        while self._queued_faces < self._max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Item]:
        """Pop items up to ``max_batch`` faces, dropping those whose request already gave up (timeout)."""
        batch: list[_Item] = []
        size = 0
        while self._pending and size + len(self._pending[0].faces) <= self._max_batch:
            item = self._pending.popleft()
            self._queued_faces -= len(item.faces)
            if item.future.cancelled():
                continue
            batch.append(item)
            size += len(item.faces)
        self._on_queue_depth(self._queued_faces)
        return batch
