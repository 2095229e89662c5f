"""``Client.stream()`` and ``AsyncClient.stream()`` against real servers: the session server (no keys) and one
with an API key and a low frame budget (2 frames/s, one at a time), both running the shipped models on real images
from tests/data."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from deepfer.client import AsyncClient, Client, StreamAnswer, StreamClosedError, stream_url
from deepfer.wire import StreamError, StreamFrameDropped, StreamResult
from tests.imaging import DATA

SCENE = DATA / "scenes" / "scene_0000.jpg"
OTHER = DATA / "scenes" / "scene_0002.jpg"
API_KEY = "stream-client-key"
# A track id is given once a face is seen in 3 frames in a row (deepfer.tracking.tracker); 6 frames leave margin.
FRAMES = 6


@pytest.fixture(scope="module")
def keyed(live_server: Callable[..., Any]) -> Iterator[str]:
    with live_server(api_keys=[API_KEY], stream_max_fps=2.0, stream_burst_frames=1) as url:
        yield url


def results_only(messages: list[StreamAnswer]) -> list[StreamResult]:
    """The results among a stream's answers, which answer every frame in order."""
    assert [message.seq for message in messages] == list(range(len(messages))), messages
    assert not [message for message in messages if isinstance(message, StreamError)], messages
    return [message for message in messages if isinstance(message, StreamResult)]


def test_stream_url_follows_the_scheme_and_keeps_a_path_prefix() -> None:
    assert stream_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/stream"
    assert stream_url("https://fer.example/api/") == "wss://fer.example/api/stream"


def test_a_sync_stream_answers_each_frame_with_tracks(server_url: str) -> None:
    with Client(server_url) as client, client.stream() as stream:
        assert stream.ready.limits.max_fps > 0
        assert stream.ready.model.name
        answers = []
        for seq in range(FRAMES):
            time.sleep(1 / stream.ready.limits.max_fps)  # under the frame-rate limit, so none is dropped
            assert stream.send(SCENE) == seq
            answers.append(stream.receive())
    results = results_only(answers)
    assert [result.seq for result in results] == list(range(FRAMES))
    assert all(result.faces for result in results)
    assert all(face.track_id is not None for face in results[-1].faces)
    assert results[-1].dropped.stale == results[-1].dropped.over_rate == results[-1].dropped.busy == 0


def test_results_feeds_an_iterable_and_yields_every_answer(server_url: str) -> None:
    frames = [SCENE.read_bytes()] * FRAMES
    with Client(server_url) as client, client.stream() as stream:
        # Paced below the server's max_fps: every frame is answered, the last one (the newest) with a result.
        results = results_only(list(stream.results(frames, fps=10)))
    assert results[-1].seq == FRAMES - 1
    assert all(face.track_id is not None for face in results[-1].faces)


def test_an_async_stream_sends_arrays_and_yields_tracks(server_url: str) -> None:
    import cv2

    image = cv2.imread(str(OTHER))

    async def run() -> list[StreamAnswer]:
        async with AsyncClient(server_url) as client, await client.stream() as stream:
            assert stream.ready.limits.max_message_bytes > 0
            first = await stream.send(image)
            assert first == 0
            answers = [await stream.receive()]
            answers += [message async for message in stream.results(itertools.repeat(image, FRAMES - 1), fps=10)]
            return answers

    results = results_only(asyncio.run(run()))
    assert results[0].seq == 0
    assert results[-1].seq == FRAMES - 1
    assert results[-1].faces
    assert all(face.track_id is not None for face in results[-1].faces)


def test_a_bad_frame_is_an_error_answer_and_the_stream_goes_on(server_url: str) -> None:
    with Client(server_url) as client, client.stream() as stream:
        stream.send(b"this is not an image")
        error = stream.receive()
        time.sleep(1 / stream.ready.limits.max_fps)  # else the next frame may come too soon and be dropped
        stream.send(SCENE)
        after = stream.receive()
    assert isinstance(error, StreamError)
    assert (error.seq, error.error.code) == (0, "bad_image")
    assert isinstance(after, StreamResult)
    assert after.seq == 1
    assert after.faces


def test_the_key_opens_a_stream_on_a_keyed_service(keyed: str) -> None:
    with Client(keyed, api_key=API_KEY) as client, client.stream() as stream:
        stream.send(SCENE)
        assert isinstance(stream.receive(), StreamResult)


def test_a_key_sent_to_a_service_without_keys_is_ignored(server_url: str) -> None:
    with Client(server_url, api_key="unused") as client, client.stream() as stream:
        stream.send(SCENE)
        assert isinstance(stream.receive(), StreamResult)


def test_a_wrong_key_raises_4401_with_the_reason(keyed: str) -> None:
    with Client(keyed, api_key="wrong") as client, pytest.raises(StreamClosedError) as refused:
        client.stream()
    assert (refused.value.status, refused.value.code, refused.value.reason) == (4401, "unauthorized", "invalid API key")


def test_an_async_wrong_key_raises_4401(keyed: str) -> None:
    async def run() -> None:
        async with AsyncClient(keyed, api_key="wrong") as client:
            await client.stream()

    with pytest.raises(StreamClosedError) as refused:
        asyncio.run(run())
    assert refused.value.status == 4401


def test_closing_a_stream_is_a_normal_close_and_the_service_serves_on(server_url: str) -> None:
    with Client(server_url) as client:
        with client.stream() as stream:
            stream.send(SCENE)
            assert isinstance(stream.receive(), StreamResult)
        with pytest.raises(StreamClosedError) as closed:
            stream.receive()
        assert closed.value.status == 1000
        with client.stream() as again:
            again.send(SCENE)
            assert isinstance(again.receive(), StreamResult)


def test_a_sender_faster_than_max_fps_gets_every_answer_and_the_loop_ends(keyed: str) -> None:
    """20 frames/s against 2 (one at a time): every frame is answered, most of them "dropped" for the rate, and
    ``results`` ends as soon as the last is answered instead of waiting out a quiet period."""
    frames = 12
    with Client(keyed, api_key=API_KEY, timeout_s=30) as client, client.stream() as stream:
        started = time.monotonic()
        answers = list(stream.results([SCENE] * frames, fps=20))
        took_s = time.monotonic() - started
    assert [answer.seq for answer in answers] == list(range(frames))
    dropped = [answer for answer in answers if isinstance(answer, StreamFrameDropped)]
    assert dropped and {answer.reason for answer in dropped} <= {"rate", "superseded"}
    assert any(answer.reason == "rate" for answer in dropped)
    assert any(isinstance(answer, StreamResult) for answer in answers)
    assert took_s < frames / 20 + 10, f"{took_s:.1f} s"


def test_an_async_sender_faster_than_max_fps_gets_every_answer(keyed: str) -> None:
    frames = 8

    async def run() -> list[StreamAnswer]:
        async with AsyncClient(keyed, api_key=API_KEY) as client, await client.stream() as stream:
            return [answer async for answer in stream.results(itertools.repeat(SCENE, frames), fps=20)]

    answers = asyncio.run(asyncio.wait_for(run(), 60))
    assert [answer.seq for answer in answers] == list(range(frames))
    assert any(isinstance(answer, StreamFrameDropped) and answer.reason == "rate" for answer in answers)
