"""WS /stream against real servers with the shipped models, through a real WebSocket client (``websockets``).

The session server (default limits, no keys) answers frames with tracks; a second server with an API key and
small limits (one stream, 1 s idle, 200 kB messages, no frame-rate limit) shows each close code and the drop
policy, and that the server serves on after each; a third (a key, one stream, 4 frames/s, a 1 s wait for the key,
a small unsent-bytes bound, an allowed origin) shows the frame budget, admission after the key, the origin check
and the ping-flood bound.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
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


def answers(ws: ClientConnection, frames: int) -> list[dict[str, Any]]:
    """The answers to ``frames`` frames: the server answers each one, in order (30 s each at most)."""
    got = [receive(ws) for _ in range(frames)]
    assert [answer["seq"] for answer in got] == list(range(frames)), got
    return got


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]


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


@pytest.fixture(scope="module")
def guarded(live_server: Callable[..., Any]) -> Iterator[str]:
    settings = {
        "api_keys": [API_KEY],
        "stream_max_connections": 1,
        "stream_auth_timeout_s": 1.0,
        "stream_max_fps": 4.0,
        "stream_max_unsent_bytes": 65_536,
        "cors_origins": ["https://app.example"],
    }
    with live_server(**settings) as url:
        yield url


@contextmanager
def open_stream(url: str, key: str | None = API_KEY, origin: str | None = None) -> Iterator[ClientConnection]:
    """A stream past its handshake: the key sent (when given) and the server's "ready" received."""
    # The limited server allows one stream, and a stream the client just closed is freed when the server has
    # read the close: a reconnect in that moment is refused with 1013, so it is tried again for a while.
    deadline = time.monotonic() + 5
    while True:
        with connect(ws_url(url), open_timeout=30, origin=origin) as ws:  # type: ignore[arg-type]
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
        assert ready["type"] == "ready" and ready["limits"]["max_fps"] == 30 and ready["limits"]["burst_frames"] == 4
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
        assert result["dropped"] == {"stale": 0, "over_rate": 0, "busy": 0}
        timing = result["timing"]
        assert 0 <= timing["queued_ms"] <= timing["total_ms"] and 0 < timing["analysis_ms"] <= timing["total_ms"]
        for face, truth in zip(result["faces"], expected, strict=True):
            assert face["box"] == truth["box"]
            for label in LABELS:
                assert face["probabilities"][label] == pytest.approx(truth["probabilities"][label], abs=1e-5)
            assert sum(face["smoothed"].values()) == pytest.approx(1.0, abs=1e-5)
            assert face["smoothed_emotion"] == max(face["smoothed"], key=face["smoothed"].__getitem__)


def test_every_frame_of_a_burst_is_answered_in_order(server_url: str) -> None:
    """12 frames at once against 30 frames/s with a budget of 4: each frame gets exactly one answer, in order:
    a result, or "dropped" with why (over the budget, or superseded by a newer frame). Nothing is left unsaid, so
    a client waiting for an answer gets one."""
    frames = 12
    with connect(ws_url(server_url), open_timeout=30) as ws:
        receive(ws)
        for _ in range(frames):
            ws.send(SCENE)
        got = answers(ws, frames)
        ws.send(OTHER)  # the stream goes on
        assert receive(ws)["seq"] == frames
    assert got[0]["type"] == "result"
    reasons = [answer["reason"] for answer in got if answer["type"] == "dropped"]
    assert {answer["type"] for answer in got} <= {"result", "dropped"} and set(reasons) <= {"rate", "superseded"}
    assert reasons.count("rate") >= frames - 4 - 2, reasons  # 4 at once, and at most 2 refilled while sending


def test_the_frame_budget_is_a_token_bucket(guarded: str) -> None:
    """4 frames/s with a burst of 4: a camera whose frames come in pairs (below the rate on average) loses none;
    7 frames at once lose the 3 over the budget, answered "rate"."""
    with open_stream(guarded) as ws:
        jittery = []
        for _ in range(4):
            ws.send(SCENE)
            ws.send(SCENE)
            jittery += [receive(ws), receive(ws)]
            time.sleep(0.6)  # 2 frames every 0.6 s: 3.3 frames/s
        assert [answer["seq"] for answer in jittery] == list(range(8))
        assert not [answer for answer in jittery if answer.get("reason") == "rate"], jittery
        time.sleep(1.1)  # the bucket full again
        for _ in range(7):
            ws.send(SCENE)
        burst = [receive(ws) for _ in range(7)]
    assert [answer["seq"] for answer in burst] == list(range(8, 15))
    rate = [answer["seq"] for answer in burst if answer.get("reason") == "rate"]
    assert 1 <= len(rate) <= 3 and rate == list(range(15 - len(rate), 15)), burst


def test_latest_frame_wins_when_the_client_outruns_the_server(limited: str) -> None:
    """24 frames at once: the server analyses some, always the newest waiting, and answers the rest "superseded",
    each in its place."""
    frames = 24
    with open_stream(limited) as ws:
        for _ in range(frames):
            ws.send(SCENE)
        got = answers(ws, frames)
    results = [answer for answer in got if answer["type"] == "result"]
    superseded = [answer for answer in got if answer["type"] == "dropped"]
    assert results[0]["seq"] == 0 and results[-1]["seq"] == frames - 1
    assert superseded and all(answer["reason"] == "superseded" for answer in superseded)
    assert results[-1]["dropped"] == {"stale": len(superseded), "over_rate": 0, "busy": 0}


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
        ({"key": API_KEY}, 1008),  # not the expected first message
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
            second.send(json.dumps({"api_key": API_KEY}))  # a slot is taken, or refused, once the key is in
            assert close_code(second) == 1013  # one stream at a time
        first.send(SCENE)
        assert receive(first)["type"] == "result"
    with open_stream(limited) as again:  # the slot is free once the stream closes
        again.send(SCENE)
        assert receive(again)["type"] == "result"


def test_sockets_without_a_key_take_no_stream_slot(guarded: str, caplog: pytest.LogCaptureFixture) -> None:
    """One stream allowed: two sockets that never send the key do not lock the keyed client out, and are closed
    with 4408 once stream_auth_timeout_s (1 s) has passed."""
    with connect(ws_url(guarded), open_timeout=30) as silent, connect(ws_url(guarded), open_timeout=30) as other:
        started = time.monotonic()
        with caplog.at_level(logging.INFO), open_stream(guarded) as keyed:
            keyed.send(SCENE)
            assert receive(keyed)["type"] == "result"
            for ws in (silent, other):
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
                assert closed.value.rcvd.reason == "no API key for 1 s"
            assert 0.9 < time.monotonic() - started < 8
    assert len([r for r in caplog.records if "4408" in r.getMessage()]) == 2  # one line each


@pytest.mark.parametrize(
    ("payload", "code", "reason"),
    [
        # The first message, nested too deep for a recursive parser (json.loads raised RecursionError).
        (json.dumps({"api_key": "k"}).replace('"k"', "[" * 50_000 + "]" * 50_000), 1008, "api_key"),
        (b'{"api_key": "\xff\xfe"}', 1007, "UTF-8"),  # not UTF-8, in a text frame
    ],
)
def test_a_bad_first_message_closes_with_its_code_a_reason_and_one_line(
    limited: str, caplog: pytest.LogCaptureFixture, payload: str | bytes, code: int, reason: str
) -> None:
    with caplog.at_level(logging.INFO):
        deadline = time.monotonic() + 5  # 1013 while the previous test's stream is still being freed
        while True:
            with connect(ws_url(limited), open_timeout=30) as ws:
                ws.send(payload, text=True)
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=30)
            assert closed.value.rcvd is not None, "the connection dropped without a close frame"
            if closed.value.rcvd.code != 1013 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert (closed.value.rcvd.code, reason in closed.value.rcvd.reason) == (code, True), closed.value.rcvd
        with open_stream(limited) as ws:  # served on
            ws.send(SCENE)
            assert receive(ws)["type"] == "result"
    no_tracebacks(caplog)
    assert len([r for r in caplog.records if f"closed with {code}" in r.getMessage()]) == 1


def test_text_that_is_not_utf8_during_a_stream_closes_with_1007(limited: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), open_stream(limited) as ws:
        ws.send(b"\xc3\x28", text=True)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007 and "UTF-8" in closed.value.rcvd.reason
    no_tracebacks(caplog)
    assert len([r for r in caplog.records if "closed with 1007" in r.getMessage()]) == 1


def test_a_browser_page_of_another_site_cannot_open_a_stream(server_url: str, guarded: str) -> None:
    """403 origin_not_allowed for a foreign Origin; the service's own origin, a configured one (CORS_ORIGINS) and
    no Origin at all (a non-browser client) are served."""
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(server_url), open_timeout=30, origin="https://evil.example")  # type: ignore[arg-type]
    response = refused.value.response
    assert response.status_code == 403
    assert json.loads(response.body or b"")["error"]["code"] == "origin_not_allowed"
    with connect(ws_url(server_url), open_timeout=30, origin=server_url) as ws:  # type: ignore[arg-type]
        assert receive(ws)["type"] == "ready"
    with open_stream(guarded, origin="https://app.example") as ws:
        ws.send(SCENE)
        assert receive(ws)["type"] == "result"
    with pytest.raises(InvalidStatus):
        connect(ws_url(guarded), open_timeout=30, origin=server_url)  # type: ignore[arg-type]


def rss_bytes() -> int:
    """This process's resident memory (the test servers run in it)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


def test_a_ping_flood_that_reads_nothing_is_closed_with_1008(guarded: str, caplog: pytest.LogCaptureFixture) -> None:
    """A raw client sends pings as fast as it can and never reads the pongs: the server stops at
    stream_max_unsent_bytes (64 KiB here) of unread pongs and closes with 1008, instead of buffering them all;
    memory stays put while 30 MB of pings are offered."""
    port = int(guarded.rsplit(":", 1)[1])
    ping = struct.pack("!BB4s", 0x89, 0x80 | 125, b"mask") + bytes(125)  # masked, as from a client
    chunk = ping * 1000
    before = rss_bytes()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        raw.sendall(
            b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += raw.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        key = json.dumps({"api_key": API_KEY}).encode()
        raw.sendall(struct.pack("!BB4s", 0x81, 0x80 | len(key), bytes(4)) + key)  # a zero mask leaves it as is
        raw.settimeout(2)
        offered = 0
        try:
            while offered < 30_000_000:
                raw.sendall(chunk)
                offered += len(chunk)
        except (TimeoutError, OSError):
            pass  # the server stopped reading
        grown = rss_bytes() - before
        raw.settimeout(30)
        code = close_code_of(raw)
    assert offered < 30_000_000, "the server took 30 MB of pings without closing"
    assert code == 1008
    no_tracebacks(caplog)
    assert grown < 15_000_000, f"the process grew {grown / 1e6:.0f} MB"


def close_code_of(raw: socket.socket) -> int | None:
    """Read server frames (unmasked) until the close frame; its code."""
    data = b""
    while True:
        while len(data) >= 2:
            opcode, length = data[0] & 0x0F, data[1] & 0x7F
            start = 2 + {126: 2, 127: 8}.get(length, 0)
            if length >= 126:
                length = int.from_bytes(data[2:start], "big")
            if len(data) < start + length:
                break
            if opcode == 0x8:
                code: int = struct.unpack("!H", data[start : start + 2])[0]
                return code
            data = data[start + length :]
        more = raw.recv(1 << 16)
        if not more:
            return None
        data += more
