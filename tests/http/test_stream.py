"""WS /stream against real servers with the shipped models, through a real WebSocket client (``websockets``).

The session server (default limits, no keys) answers frames with tracks; a second server with an API key and
small limits (one stream, 1 s idle, 200 kB messages, no frame-rate limit) shows each close code and the drop
policy, and that the server serves on after each.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from deepfer.contract import LABELS
from tests.imaging import DATA

SCENE = (DATA / "scenes" / "scene_0000.jpg").read_bytes()
OTHER = (DATA / "scenes" / "scene_0002.jpg").read_bytes()
API_KEY = "stream-test-key"


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://") + "/stream"


def receive(ws: ClientConnection) -> dict[str, Any]:
    message = ws.recv(timeout=30)
    assert isinstance(message, str)
    answer: dict[str, Any] = json.loads(message)
    return answer


def close_code(ws: ClientConnection) -> int:
    """The server's close code, once it closes the stream (any messages before it are skipped)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None, "the connection dropped without a close frame"
    return closed.value.rcvd.code


@pytest.fixture(scope="module")
def limited(live_server: Callable[..., Any]) -> Iterator[str]:
    settings = {
        "api_keys": [API_KEY],
        "stream_max_connections": 1,
        "stream_idle_timeout_s": 1.0,
        "stream_max_message_bytes": 200_000,
        "stream_max_fps": 1e6,
        "access_log": True,
    }
    with live_server(**settings) as url:
        yield url


@contextmanager
def open_stream(url: str, key: str | None = API_KEY) -> Iterator[ClientConnection]:
    """A stream past its handshake: the key sent (when given) and the server's "ready" received."""
    # The limited server allows one stream, and a stream the client just closed is freed when the server has
    # read the close: a reconnect in that moment is refused with 1013, so it is tried again for a while.
    deadline = time.monotonic() + 5
    while True:
        with connect(ws_url(url), open_timeout=30) as ws:
            try:
                if key is not None:
                    ws.send(json.dumps({"api_key": key}))
                ready = receive(ws)
            except ConnectionClosed as closed:
                if closed.rcvd is None or closed.rcvd.code != 1013 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            assert ready["type"] == "ready"
            yield ws
            return


def test_a_stream_gives_tracks_and_smoothed_probabilities(server_url: str) -> None:
    """Frames sent one at a time: every frame answered, the three people get IDs on their third frame and keep
    them, raw probabilities equal /predict's for the same bytes, smoothed ones are probabilities."""
    expected = httpx.post(f"{server_url}/predict", files={"file": SCENE}, timeout=30).json()["faces"]
    with connect(ws_url(server_url), open_timeout=30) as ws:
        ready = receive(ws)
        assert ready["type"] == "ready" and ready["limits"]["max_fps"] == 30
        results = []
        for _ in range(6):
            time.sleep(0.05)  # under 30 frames/s
            ws.send(SCENE)
            results.append(receive(ws))
    assert [r["type"] for r in results] == ["result"] * 6
    assert [r["seq"] for r in results] == list(range(6))
    assert all(b["time_s"] > a["time_s"] for a, b in itertools.pairwise(results))
    ids = [[face["track_id"] for face in r["faces"]] for r in results]
    assert ids[0] == ids[1] == [None, None, None]
    assert sorted(ids[2]) == [1, 2, 3] and all(frame == ids[2] for frame in ids[2:])
    for result in results:
        assert result["dropped"] == {"stale": 0, "over_rate": 0}
        timing = result["timing"]
        assert 0 <= timing["queued_ms"] <= timing["total_ms"] and 0 < timing["analysis_ms"] <= timing["total_ms"]
        for face, truth in zip(result["faces"], expected, strict=True):
            assert face["box"] == truth["box"]
            for label in LABELS:
                assert face["probabilities"][label] == pytest.approx(truth["probabilities"][label], abs=1e-5)
            assert sum(face["smoothed"].values()) == pytest.approx(1.0, abs=1e-5)
            assert face["smoothed_emotion"] == max(face["smoothed"], key=face["smoothed"].__getitem__)


def test_a_burst_over_the_frame_rate_is_dropped_and_counted(server_url: str) -> None:
    """Five frames at once against 30 frames/s: the first is answered, most of the rest arrive within 1/30 s of
    it and are dropped; a frame sent later at the allowed rate is answered. Every frame is accounted for."""
    with connect(ws_url(server_url), open_timeout=30) as ws:
        receive(ws)
        for _ in range(5):
            ws.send(SCENE)
        results = [receive(ws)]
        time.sleep(0.1)
        ws.send(OTHER)
        while results[-1]["seq"] != 5:
            results.append(receive(ws))
    assert results[0]["seq"] == 0
    dropped = results[-1]["dropped"]
    assert dropped["over_rate"] >= 1
    assert len(results) + dropped["over_rate"] + dropped["stale"] == 6, ([r["seq"] for r in results], dropped)


def test_latest_frame_wins_when_the_client_outruns_the_server(limited: str) -> None:
    """24 frames at once: the server answers some, always the newest waiting, and counts the rest as stale."""
    with open_stream(limited) as ws:
        frames = 24
        for _ in range(frames):
            ws.send(SCENE)
        results = []
        while not results or results[-1]["seq"] != frames - 1:
            results.append(receive(ws))
    seqs = [r["seq"] for r in results]
    assert seqs == sorted(set(seqs)) and seqs[0] == 0
    dropped = results[-1]["dropped"]
    assert dropped["over_rate"] == 0 and dropped["stale"] > 0
    assert len(results) + dropped["stale"] == frames, (seqs, dropped)


def test_bad_frames_get_an_error_and_the_stream_goes_on(limited: str) -> None:
    with open_stream(limited) as ws:
        ws.send(b"this is not an image")
        error = receive(ws)
        ws.send(SCENE)
        result = receive(ws)
    assert error == {
        "type": "error",
        "seq": 0,
        "error": {"code": "bad_image", "message": error["error"]["message"]},
    }
    assert result["type"] == "result" and result["seq"] == 1 and len(result["faces"]) == 3


@pytest.mark.parametrize(
    ("first", "code"),
    [
        (None, 1003),  # a frame before the key
        ({"api_key": "wrong"}, 4401),
        ({"key": API_KEY}, 1003),  # not the expected first message
    ],
)
def test_the_key_is_the_first_message(limited: str, first: dict[str, str] | None, code: int) -> None:
    deadline = time.monotonic() + 5  # 1013 while the previous test's stream is still being freed, as in open_stream
    while True:
        with connect(ws_url(limited), open_timeout=30) as ws:
            ws.send(SCENE if first is None else json.dumps(first))
            got = close_code(ws)
        if got != 1013 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert got == code
    with open_stream(limited) as ws:  # served on
        ws.send(SCENE)
        assert receive(ws)["type"] == "result"


def test_the_key_is_never_logged(limited: str, caplog: pytest.LogCaptureFixture) -> None:
    """Not in the access log nor any other record at INFO, the service's level (and the most verbose one a
    deployment should run: at DEBUG, the websockets layer itself logs the start of every frame it carries)."""
    with caplog.at_level(logging.INFO), open_stream(limited) as ws:
        ws.send(SCENE)
        receive(ws)
    assert any("/stream" in r.getMessage() for r in caplog.records), "no access log line: the check would be empty"
    assert not [r for r in caplog.records if API_KEY in r.getMessage() or API_KEY in str(r.__dict__)]


def test_protocol_errors_and_limits_close_with_their_codes(limited: str) -> None:
    with open_stream(limited) as ws:
        ws.send("a text message")
        assert close_code(ws) == 1003
    with open_stream(limited) as ws:
        ws.send(b"\xff" * 200_001)
        assert close_code(ws) == 1009  # too big
    with open_stream(limited) as ws:
        started = time.monotonic()
        assert close_code(ws) == 4408  # idle
        assert 0.9 < time.monotonic() - started < 5
    with open_stream(limited) as first:
        with connect(ws_url(limited), open_timeout=30) as second:
            assert close_code(second) == 1013  # one stream at a time
        first.send(SCENE)
        assert receive(first)["type"] == "result"
    with open_stream(limited) as again:  # the slot is free once the stream closes
        again.send(SCENE)
        assert receive(again)["type"] == "result"
