"""Issue 25's attacks on the HTTP input, each against a real server: a PNG whose data inflates past its header,
malformed chunked bodies and pipelined requests, a million multipart parts, an empty file in a batch, a missing
or doubled Host header; and, for each, that good requests from another client keep their latency meanwhile.

The malformed requests go over raw sockets (an HTTP client would refuse to send them); the bombs come from
``tests/hostile_inputs.py``, small on disk.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.exchanges import error_code, raw_exchange
from tests.hostile_inputs import many_parts_multipart, png_idat_bomb
from tests.imaging import DATA
from tests.servers import deepfer_serve, free_port, run_server, server_settings, wait_ready

SCENE = (DATA / "scenes" / "scene_0000.jpg").read_bytes()  # 640 x 480, three faces
MAX_FORM_FIELDS = 4


@pytest.fixture(scope="module")
def url(live_server: Callable[..., Any]) -> Iterator[str]:
    """A server of this module's own, so its metrics count only what these tests sent."""
    with live_server(max_form_fields=MAX_FORM_FIELDS) as base_url:
        yield base_url


def answers(stream: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in ``stream``, in order (every answer here has a Content-Length)."""
    found = []
    while stream:
        head, _, rest = stream.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        fields = dict(line.lower().split(b": ", 1) for line in lines[1:])
        length = int(fields[b"content-length"])
        found.append((int(lines[0].split()[1]), rest[:length]))
        stream = rest[length:]
    return found


def first_answer(url: str, data: bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """Send ``data`` on one raw connection and read until the first complete answer, leaving the connection open
    (a server that answers early may still wait for the rest of the body)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as raw:
        raw.sendall(data)
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
            head, separator, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: (\d+)", head)
            if separator and length and len(body) >= int(length[1]):
                return int(head.split()[1]), body[: int(length[1])]
        raise AssertionError(f"connection closed without a complete answer: {received[:200]!r}")


def server_faults(url: str) -> list[str]:
    """The /metrics lines that count a 5xx answer (but /readyz's while the server warmed up) or an internal error."""
    text = httpx.get(f"{url}/metrics").text
    fives = [line for line in text.splitlines() if line.startswith("deepfer_requests_total") and 'status="5' in line]
    internal = [line for line in text.splitlines() if line.startswith('deepfer_errors_total{code="internal"}')]
    return [line for line in fives if 'route="/readyz"' not in line] + internal


def request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/1.1\r\n".encode() + "".join(f"{h}\r\n" for h in headers).encode() + b"\r\n" + body


def multipart_head(length: int | None = None) -> tuple[str, ...]:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return "Host: x", "Content-Type: multipart/form-data; boundary=b", size


# Each a chunked body the parser cannot read, sent with a content type the route reads (multipart: the request's
# own body is bad) and one it refuses before reading (the answer is sent, then the bad bytes arrive).
BAD_CHUNKS = {
    "letters in the chunk size": b"5\r\n--b\r\n\r\nzz\r\n",
    "chunk size overflowing 64 bits": b"fffffffffffffffffffff\r\n",
    "chunk longer than its size": b"2\r\n--b\r\n\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=b", "image/png"])
@pytest.mark.parametrize("case", list(BAD_CHUNKS))
def test_a_malformed_chunked_body_is_a_400_and_no_server_fault(
    url: str, case: str, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    head = ("Host: x", f"Content-Type: {content_type}", "Transfer-Encoding: chunked")
    got = answers(raw_exchange(url, iter([request("POST", "/predict", *head, body=BAD_CHUNKS[case])])))
    assert got[-1][0] == 400 and b'"bad_request"' in got[-1][1] and b"malformed HTTP request" in got[-1][1], got
    assert [status for status, _ in got[:-1]] in ([], [415]), got  # image/png is refused before its body is read
    assert not server_faults(url)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR or record.exc_info]


MALFORMED_REQUESTS = {
    "request line": b"GET /not a request line\r\n\r\n",
    "chunked body": request("POST", "/predict", *multipart_head(), body=BAD_CHUNKS["letters in the chunk size"]),
}


@pytest.mark.parametrize("malformed", list(MALFORMED_REQUESTS))
def test_pipelined_requests_before_a_malformed_one_are_answered_in_order(url: str, malformed: str) -> None:
    """The malformed request's 400 comes after the answers to the three before it (a prediction among them, so
    the 400 is ready long before they are), and nothing after it is read."""
    multipart = b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + SCENE + b"\r\n--b--\r\n"
    pipelined = [
        request("GET", "/healthz", "Host: x"),
        request("POST", "/predict", *multipart_head(len(multipart)), body=multipart),
        request("GET", "/model", "Host: x"),
        MALFORMED_REQUESTS[malformed],
        request("GET", "/healthz", "Host: x"),  # after the bad one: never read
    ]
    got = answers(raw_exchange(url, iter([b"".join(pipelined)])))
    assert [status for status, _ in got] == [200, 200, 200, 400], got
    assert b'"faces"' in got[1][1] and b'"labels"' in got[2][1]
    assert not server_faults(url)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.0\r\n\r\n", 200),  # HTTP/1.0 has no Host requirement
        (b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 200),
    ],
)
def test_a_missing_or_doubled_host_header_is_a_400(url: str, raw: bytes, status: int) -> None:
    got = answers(raw_exchange(url, iter([raw])))
    assert [answer for answer, _ in got] == [status], got
    if status == 400:
        assert b"Host header" in got[0][1]


def test_form_fields_past_the_limit_are_refused_with_its_name(url: str) -> None:
    fields = {f"note{number}": "x" for number in range(MAX_FORM_FIELDS + 1)}
    response = httpx.post(f"{url}/predict", data=fields, files={"file": SCENE})
    assert response.status_code == 413 and error_code(response) == "too_many_fields", response.text
    message = response.json()["error"]["message"]
    assert f"max_form_fields={MAX_FORM_FIELDS}" in message and "DEEPFER_MAX_FORM_FIELDS" in message
    within = {f"note{number}": "x" for number in range(MAX_FORM_FIELDS)}
    assert httpx.post(f"{url}/predict", data=within, files={"file": SCENE}).status_code == 200


def test_a_million_empty_parts_are_refused_before_the_body_is_sent(url: str) -> None:
    """The answer comes while 99% of the body is still unsent: the parse stops at the limit, not at the end."""
    body, _ = many_parts_multipart(1_000_000)
    status, answer = first_answer(url, request("POST", "/predict", *multipart_head(len(body)), body=body[:65536]))
    assert status == 413 and b'"too_many_fields"' in answer, answer


def test_an_empty_file_in_a_batch_is_that_files_error(url: str) -> None:
    files = [("files", ("a.jpg", SCENE)), ("files", ("empty.jpg", b"")), ("files", ("c.jpg", SCENE))]
    response = httpx.post(f"{url}/predict/batch", files=files, timeout=30)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[1]["filename"] == "empty.jpg" and results[1]["error"]["code"] == "empty_body", results[1]
    assert all(item["result"] is not None and item["error"] is None for item in (results[0], results[2]))
    single = httpx.post(f"{url}/predict", files={"file": ("empty.jpg", b"")})
    assert single.status_code == 400 and error_code(single) == "empty_body"


def test_a_png_inflating_past_its_header_is_refused_at_once(url: str) -> None:
    started = time.monotonic()
    response = httpx.post(f"{url}/predict", files={"file": png_idat_bomb(64, 64, inflated_mib=3000)}, timeout=60)
    assert response.status_code == 413 and error_code(response) == "too_much_image_data", response.text
    assert time.monotonic() - started < 5  # it was tens of seconds; this is upload time


# The acceptance check: good requests keep their latency while each class is refused.


def connection_closed_within(raw: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``raw`` while the client keeps trickling body bytes for up to ``seconds``."""
    raw.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            raw.sendall(b"x" * 64)
            if raw.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/predict", ("Host: x", "Content-Type: image/jpeg", "Content-Length: 50000000"), 413),
        ("/predict?min_scor=0.5", ("Host: x", "Content-Type: image/jpeg", "Content-Length: 5000"), 400),
    ],
)
def test_an_answer_sent_before_the_body_closes_the_connection(
    url: str, path: str, headers: tuple[str, ...], status: int
) -> None:
    """A 413 from Content-Length (or any answer before the body is read) closes the connection: kept open, uvicorn
    would read and drop the rest of the body with no timeout, and a client trickling bytes held it for good."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(request("POST", path, *headers, body=b"\xff\xd8" + b"x" * 1000))
        head = raw.recv(65536)
        assert int(head.split()[1]) == status
        assert b"\r\nconnection: close\r\n" in head.lower()
        assert connection_closed_within(raw, seconds=5.0)


def read_answer(raw: socket.socket) -> bytes:
    """One whole answer (head and Content-Length body) from ``raw``; fails if the server closes first."""
    received = b""
    while True:
        head, separator, body = received.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: (\d+)", head)
        if separator and length and len(body) >= int(length[1]):
            return received
        chunk = raw.recv(65536)
        assert chunk, "the server closed a connection whose request body it had read"
        received += chunk


def test_a_connection_whose_bodies_were_read_stays_open_for_the_next_request(url: str) -> None:
    """Keep-alive is untouched where the body was read: a prediction, then a health check, on one connection."""
    host, port = url.removeprefix("http://").split(":")
    post = request("POST", "/predict", "Host: x", "Content-Type: image/jpeg", f"Content-Length: {len(SCENE)}")
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        for data in (post + SCENE, request("GET", "/healthz", "Host: x")):
            raw.sendall(data)
            answer = read_answer(raw)
            assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" not in answer.lower()


def multipart_request(body: bytes) -> bytes:
    return request("POST", "/predict", *multipart_head(len(body)), body=body)


# Each attack as the bytes one raw connection sends: a client library would cost the test process more CPU per
# request (a new SSL context per call) than the refusal costs the server, and that would be what was measured.
ATTACK_REQUESTS = {
    # libpng took 1.5 s of a pipeline thread for each copy of this 0.5 MB file.
    "png inflating 512 MiB": multipart_request(
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        + png_idat_bomb(64, 64, inflated_mib=512)
        + b"\r\n--b--\r\n"
    ),
    # 100,000 empty parts (900 KB) held the event loop 0.1-0.2 s each, so two attackers kept it busy; no more, so
    # that once they are refused what the attack costs is its parts, not the bandwidth of its uploads.
    "100,000 multipart parts": multipart_request(many_parts_multipart(100_000)[0]),
    "malformed chunked body": MALFORMED_REQUESTS["chunked body"],
    "malformed pipelined request": request("GET", "/healthz", "Host: x") * 3 + MALFORMED_REQUESTS["request line"],
    "no Host header": b"GET /healthz HTTP/1.1\r\n\r\n",
}
ROUNDS, PER_ROUND = 3, 12  # good requests: 3 rounds of 12 quiet then 12 under attack
ATTACK_EVERY_S = 0.1  # per attacker: a bomb runs back to back, a cheap attack is not a flood
ROUND_DEADLINE_S = 30.0
# Added to 3x the quiet p99: one scheduling hiccup of this shared 2-core machine, where with no attack at all the
# slowest of 36 requests was up to 0.2 s above the slowest of the 36 before. A bomb's stall is 0.5 s to seconds.
SLACK_S = 0.25


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``deepfer serve`` in its own process, as deployed: the attackers here share no interpreter with it."""
    port, log = free_port(), tmp_path_factory.mktemp("serve") / "serve.log"
    base_url = f"http://127.0.0.1:{port}"
    with deepfer_serve(port, {"DEEPFER_ACCESS_LOG": "false"}, log) as server:
        wait_ready(base_url, server)
        yield base_url, log


def good_latencies(http: httpx.Client) -> list[float]:
    """Seconds of PER_ROUND scene predictions in turn; stops at the first answer that is not a 200, or at the
    deadline (so a stalled service fails the test in bounded time)."""
    seen: list[float] = []
    stop_at = time.monotonic() + ROUND_DEADLINE_S
    while len(seen) < PER_ROUND and time.monotonic() < stop_at:
        started = time.monotonic()
        response = http.post("/predict", files={"file": SCENE})
        assert response.status_code == 200, f"{response.status_code} after {time.monotonic() - started:.1f} s"
        seen.append(time.monotonic() - started)
    assert len(seen) == PER_ROUND, f"only {len(seen)} of {PER_ROUND} good requests answered in {ROUND_DEADLINE_S} s"
    return seen


@pytest.mark.parametrize("attack", list(ATTACK_REQUESTS))
def test_good_requests_keep_their_latency_while_an_attack_is_refused(served: tuple[str, Path], attack: str) -> None:
    """Good requests from one client, in rounds alternating quiet and under two attackers sending ``attack``:
    every one answered 200, and the p99 under attack within 3x of the quiet p99 (plus SLACK_S). Alternating
    rounds let whatever else loads the machine weigh on both sides alike."""
    url, log = served
    log_from = log.stat().st_size
    attacking, done = threading.Event(), threading.Event()
    answered: list[int] = []
    failed: list[Exception] = []
    in_flight = threading.Semaphore(2)  # held by an attacker while its attack awaits its answer

    def attacker() -> None:
        while not done.is_set():
            if not attacking.wait(timeout=0.1):
                continue
            started = time.monotonic()
            with in_flight:
                try:
                    answered.append(first_answer(url, ATTACK_REQUESTS[attack], timeout_s=60)[0])
                except (OSError, AssertionError) as error:
                    failed.append(error)
            time.sleep(max(0.0, ATTACK_EVERY_S - (time.monotonic() - started)))

    def until_quiet() -> None:
        """Stop the attack and wait for the answers to the attacks in flight: the quiet rounds must not measure
        a bomb still being decoded."""
        attacking.clear()
        for _ in range(2):
            assert in_flight.acquire(timeout=90), "an attack went unanswered for 90 s"
        in_flight.release(2)

    attackers = [threading.Thread(target=attacker, daemon=True) for _ in range(2)]
    for thread in attackers:
        thread.start()
    quiet: list[float] = []
    loaded: list[float] = []
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(ROUNDS):
                quiet += good_latencies(http)
                attacking.set()
                time.sleep(0.3)  # the attack under way
                loaded += good_latencies(http)
                until_quiet()
    finally:
        done.set()
        for thread in attackers:
            thread.join(timeout=90)
    quiet_p99, loaded_p99 = np.percentile(quiet, 99), np.percentile(loaded, 99)
    print(
        f"{attack}: {len(answered)} attacks, p99 quiet {quiet_p99 * 1000:.0f} ms, under it {loaded_p99 * 1000:.0f} ms"
    )
    assert answered and not failed, f"{len(answered)} attacks answered, failures: {failed[:3]}"
    assert loaded_p99 <= 3 * quiet_p99 + SLACK_S, f"p99 {loaded_p99:.3f} s under attack, {quiet_p99:.3f} s quiet"
    assert "Traceback" not in log.read_bytes()[log_from:].decode(errors="replace")


def test_a_connection_still_silent_when_the_drain_ends_is_closed_by_the_server() -> None:
    """A connection that never sends a request (a browser's preconnect) outlives ``graceful_shutdown_s`` here.
    uvicorn returns from its shutdown with that transport still open, and uvloop then closes it while closing its
    loop: an "unclosed resource" ResourceWarning, or, when the client's FIN lands at that moment, "Event loop is
    closed" and EBUSY from ``loop.close()``. The server must close what is left before its loop ends; pytest turns
    the warning into this test's failure."""
    settings = server_settings(graceful_shutdown_s=1, header_timeout_s=60)
    with socket.socket() as silent:
        with run_server(settings):
            silent.connect(("127.0.0.1", settings.port))
            time.sleep(0.3)  # accepted by the server's loop
        silent.settimeout(5)
        assert silent.recv(1) == b"", "the server left the connection open"
