"""DynamicBatcher on its own: merging, routing rows back, the max_batch cap, the bounded queue, cancellation.

The batcher only needs a function from N x ... arrays to N x 7 rows; a plain numpy function stands in here,
so these tests are about scheduling, not about the model (the live-server tests use the real one).
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from numpy.typing import NDArray

from deepfer.engine.batching import DynamicBatcher
from deepfer.errors import Overloaded


class Recorder:
    """Returns each face's first pixel in all 7 columns, so every caller can check it got its own rows."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.delay_s = delay_s
        self.release = threading.Event()
        self.release.set()

    def __call__(self, faces: NDArray[np.float32]) -> NDArray[np.float32]:
        self.release.wait(5)
        self.sizes.append(len(faces))
        return np.repeat(faces[:, 0, 0, :1], 7, axis=1).astype(np.float32)


def faces(value: float, count: int = 1) -> NDArray[np.float32]:
    return np.full((count, 48, 48, 1), value, np.float32)


async def with_batcher(run: Recorder, body: object, **options: float) -> object:
    batcher = DynamicBatcher(run, **{"max_batch": 8, "max_wait_ms": 20, "queue_size": 64, **options})
    await batcher.start()
    try:
        return await body(batcher)  # type: ignore[operator]
    finally:
        await batcher.stop()


def test_concurrent_callers_share_a_run_and_get_their_own_rows() -> None:
    run = Recorder()

    async def body(batcher: DynamicBatcher) -> list[NDArray[np.float32]]:
        return list(await asyncio.gather(*(batcher.classify(faces(i, 1 + i % 2)) for i in range(6))))

    results = asyncio.run(with_batcher(run, body))
    for i, rows in enumerate(results):  # type: ignore[arg-type]
        assert rows.shape == (1 + i % 2, 7) and (rows == i).all()
    assert sum(run.sizes) == 9 and len(run.sizes) < 6 and max(run.sizes) <= 8


def test_a_request_larger_than_max_batch_is_split() -> None:
    run = Recorder()

    async def body(batcher: DynamicBatcher) -> NDArray[np.float32]:
        return await batcher.classify(faces(3, 20))

    rows = asyncio.run(with_batcher(run, body))
    assert rows.shape == (20, 7)  # type: ignore[union-attr]
    assert run.sizes == [8, 8, 4]


def test_full_queue_raises_overloaded_immediately() -> None:
    run = Recorder()
    run.release.clear()  # the classifier is stuck: nothing leaves the queue

    async def body(batcher: DynamicBatcher) -> None:
        waiting = []
        for _ in range(2):  # the first goes into the stuck run, the second waits in the queue
            waiting.append(asyncio.create_task(batcher.classify(faces(1, 4))))
            await asyncio.sleep(0.05)
        with pytest.raises(Overloaded) as caught:  # 4 queued + 4 new > queue_size=6
            await batcher.classify(faces(1, 4))
        assert caught.value.headers() == {"Retry-After": "1"}
        run.release.set()
        await asyncio.gather(*waiting)

    asyncio.run(with_batcher(run, body, max_batch=4, queue_size=6))


def test_a_cancelled_request_is_not_classified() -> None:
    run = Recorder()
    run.release.clear()

    async def body(batcher: DynamicBatcher) -> None:
        first = asyncio.create_task(batcher.classify(faces(1)))
        await asyncio.sleep(0.05)  # first is now inside the (blocked) run
        gave_up = asyncio.create_task(batcher.classify(faces(2)))
        kept = asyncio.create_task(batcher.classify(faces(3)))
        await asyncio.sleep(0.01)
        gave_up.cancel()
        run.release.set()
        await first
        assert (await kept == 3).all()

    asyncio.run(with_batcher(run, body, max_batch=1))
    assert run.sizes == [1, 1]


def test_empty_input_needs_no_run() -> None:
    run = Recorder()

    async def body(batcher: DynamicBatcher) -> NDArray[np.float32]:
        return await batcher.classify(np.zeros((0, 48, 48, 1), np.float32))

    assert asyncio.run(with_batcher(run, body)).shape == (0, 7)  # type: ignore[union-attr]


def test_an_onnx_runtime_exception_fails_its_batch_and_the_worker_lives_on() -> None:
    """ONNX Runtime's exception types subclass plain Exception; one used to end the worker for good."""
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    def run(batch: NDArray[np.float32]) -> NDArray[np.float32]:
        if (batch < 0).any():
            raise InvalidArgument("indices element out of data bounds")
        return np.zeros((len(batch), 7), np.float32)

    async def body(batcher: DynamicBatcher) -> None:
        with pytest.raises(InvalidArgument):
            await batcher.classify(faces(-1))
        assert (await batcher.classify(faces(1, 3))).shape == (3, 7)
        assert batcher.failure is None

    asyncio.run(with_batcher(run, body))  # type: ignore[arg-type]


def test_a_worker_that_ends_fails_what_waits_and_says_why() -> None:
    """A bug in the batcher's own code ends the worker: waiting and later callers fail at once, stop() returns."""

    def broken_metrics(_: int) -> None:
        raise ZeroDivisionError("metrics bug")

    async def body() -> None:
        batcher = DynamicBatcher(Recorder(), max_batch=8, max_wait_ms=1, queue_size=64, on_batch=broken_metrics)
        await batcher.start()
        with pytest.raises(RuntimeError, match="classifier worker stopped"):
            await asyncio.wait_for(batcher.classify(faces(1)), 5)
        assert batcher.failure and "metrics bug" in batcher.failure
        with pytest.raises(RuntimeError, match="classifier worker stopped"):
            await batcher.classify(faces(2))
        await asyncio.wait_for(batcher.stop(), 5)

    asyncio.run(body())
