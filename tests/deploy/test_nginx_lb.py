"""The shipped docker/nginx.conf, run by Debian's nginx in front of three real `deepfer serve` replicas.

What compose's `lb` does cannot be checked without running nginx: whether least_conn really spreads the load,
and whether `proxy_next_upstream` turns a dying replica into retries instead of errors. The file under test is
docker/nginx.conf with only its upstream addresses and listen port moved to 127.0.0.1 (render_nginx_conf; the
substitution is documented in the file and checked in test_deploy_config.py). Everything talks to 127.0.0.1,
with a bounded number of requests and a deadline on each.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deepfer.client import Client
from deepfer.contract import LABELS
from deepfer.settings import Settings
from deepfer.wire import StreamResult
from tests.deploy.helpers import (
    Replica,
    answers_ok,
    public_scene,
    render_nginx_conf,
    running_replicas,
    stop_process,
    wait_until,
)
from tests.servers import free_port

# Debian installs nginx in /usr/sbin, which is not on a non-root user's PATH.
NGINX = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
REPLICAS = 3
CONCURRENCY = 6
REQUEST_TIMEOUT_S = 30.0

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx not installed: run docker/ci-deps.sh (Debian's nginx)")


@dataclass
class Cluster:
    """Three replicas behind one nginx, and where nginx logs each request's upstream."""

    replicas: list[Replica]
    lb_url: str
    access_log: Path


@dataclass
class LoadResult:
    """What the client saw: status codes of answered requests, and transport errors."""

    statuses: list[int]
    errors: list[str]
    in_flight_at_event: int

    @property
    def failures(self) -> int:
        """Requests that did not get a 200."""
        return len(self.errors) + sum(1 for s in self.statuses if s != 200)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Fresh replicas per test (one test kills one), nginx started last and stopped first."""
    with running_replicas(REPLICAS, tmp_path) as replicas:
        listen = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(render_nginx_conf([r.port for r in replicas], listen), encoding="utf-8")
        access_log = tmp_path / "nginx.out"
        with access_log.open("wb") as out, (tmp_path / "nginx.err").open("wb") as err:
            # -e and the pid path keep nginx off the system's /var/log and /run; daemon off so we own the process.
            command = [str(NGINX), "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "nginx.err")]
            command += ["-g", f"daemon off; pid {tmp_path / 'nginx.pid'};"]
            nginx = subprocess.Popen(command, stdout=out, stderr=err)
            try:
                lb_url = f"http://127.0.0.1:{listen}"
                wait_until(lambda: nginx.poll() is not None or answers_ok(f"{lb_url}/readyz"), 20, "nginx")
                assert nginx.poll() is None, (tmp_path / "nginx.err").read_text()
                yield Cluster(replicas, lb_url, access_log)
            finally:
                stop_process(nginx)


def predicted_count(replica: Replica) -> int:
    """Successful /predict requests this replica counted itself (its Prometheus counter)."""
    text = httpx.get(f"{replica.url}/metrics", timeout=5.0).text
    for family in text_string_to_metric_families(text):
        if family.name == "deepfer_requests":
            return int(
                sum(
                    s.value
                    for s in family.samples
                    if s.name.endswith("_total") and s.labels == {"route": "/predict", "status": "200"}
                )
            )
    return 0


def run_load(
    url: str, body: bytes, total: int, event_after: int = -1, event: threading.Event | None = None
) -> LoadResult:
    """POST ``body`` ``total`` times from CONCURRENCY threads; set ``event`` once ``event_after`` have finished.

    Each thread keeps one keep-alive connection to nginx, as a real client pool would. The number of requests
    in flight when ``event`` is set bounds how many a replica killed at that moment could have been holding.
    """
    lock = threading.Lock()
    tickets = iter(range(total))
    done = in_flight = in_flight_at_event = 0
    statuses: list[int] = []
    errors: list[str] = []

    def worker() -> None:
        nonlocal done, in_flight, in_flight_at_event
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            while True:
                with lock:
                    if next(tickets, None) is None:
                        return
                    in_flight += 1
                try:
                    response = client.post(f"{url}/predict", files={"file": ("scene.jpg", body, "image/jpeg")})
                    with lock:
                        statuses.append(response.status_code)
                    if response.status_code == 200:
                        faces = response.json()["faces"]
                        assert faces and faces[0]["emotion"] in LABELS, response.text
                except httpx.TransportError as error:
                    with lock:
                        errors.append(repr(error))
                finally:
                    with lock:
                        in_flight -= 1
                        done += 1
                        if event is not None and done == event_after:
                            in_flight_at_event = in_flight
                            event.set()

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for future in [pool.submit(worker) for _ in range(CONCURRENCY)]:
            future.result()
    return LoadResult(statuses, errors, in_flight_at_event)


def upstream_attempts(access_log: Path) -> list[list[str]]:
    """For each /predict line of the access log, the replicas nginx tried, in order."""
    attempts = []
    for line in access_log.read_text(encoding="utf-8").splitlines():
        if '"POST /predict' in line:
            field = line.split("upstream=", 1)[1].split(" upstream_status=", 1)[0]
            attempts.append([addr.strip() for addr in field.split(",")])
    return attempts


def test_requests_are_spread_over_every_replica(cluster: Cluster) -> None:
    """least_conn over three equal replicas: each serves a fair share, and no request is sent twice."""
    total = 90
    body = public_scene()
    before = [predicted_count(r) for r in cluster.replicas]
    started = time.monotonic()
    result = run_load(cluster.lb_url, body, total)
    elapsed = time.monotonic() - started
    served = [predicted_count(r) - b for r, b in zip(cluster.replicas, before, strict=True)]
    print(f"\nspread: {total} requests in {elapsed:.1f} s, per replica (their own /metrics) {served}")

    assert result.failures == 0, result
    assert sum(served) == total, "a healthy cluster must not retry"
    assert min(served) >= total * 0.15, f"uneven spread {served}"
    logged = Counter(attempt[-1] for attempt in upstream_attempts(cluster.access_log))
    assert sorted(logged.values()) == sorted(served), f"nginx log {logged} disagrees with replicas {served}"


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["crash", "graceful-stop"])
def test_a_replica_dying_mid_load_costs_no_more_than_its_in_flight_requests(
    cluster: Cluster, stop_signal: signal.Signals
) -> None:
    """Kill one replica a quarter of the way into the load; nginx retries elsewhere and the survivors take the rest.

    SIGKILL (a crash, an OOM kill) may at most fail the requests that were on that replica at that moment; with
    `non_idempotent` nginx re-sends even those when no response byte had left yet. SIGTERM (a rolling update)
    drains in-flight work first, so nothing may fail.
    """
    total, kill_after = 150, 40
    body = public_scene()
    victim, survivors = cluster.replicas[1], [cluster.replicas[0], cluster.replicas[2]]
    before = [predicted_count(r) for r in survivors]
    trigger = threading.Event()
    load: list[LoadResult] = []
    loader = threading.Thread(target=lambda: load.append(run_load(cluster.lb_url, body, total, kill_after, trigger)))
    loader.start()
    assert trigger.wait(timeout=120), "the load never reached the kill point"
    victim.process.send_signal(stop_signal)
    loader.join(timeout=300)
    assert not loader.is_alive(), "the load did not finish in 300 s"
    (result,) = load
    victim.process.wait(timeout=30)

    served_by_survivors = sum(predicted_count(r) - b for r, b in zip(survivors, before, strict=True))
    successes = sum(1 for s in result.statuses if s == 200)
    retried = sum(1 for attempt in upstream_attempts(cluster.access_log) if len(attempt) > 1)
    print(
        f"\n{stop_signal.name}: {result.failures} failed of {total} "
        f"({result.in_flight_at_event} in flight at the kill), {retried} retried by nginx, "
        f"victim served {successes - served_by_survivors}, survivors {served_by_survivors}"
    )

    if stop_signal == signal.SIGTERM:
        assert result.failures == 0, result
    else:
        assert result.failures <= result.in_flight_at_event, result
    assert successes - served_by_survivors > 0, "the victim should have served its share before it died"
    assert served_by_survivors >= total - kill_after - result.in_flight_at_event, "survivors must take the rest"


def test_a_stream_works_through_nginx(cluster: Cluster) -> None:
    """WS /stream through the shipped config: the upgrade reaches a replica and results come back with tracks."""
    frames = 6  # a track id is given on a face's 3rd frame in a row
    with Client(cluster.lb_url) as client, client.stream() as stream:
        # One frame at a time, each answered before the next is sent: paced sends replace a frame still waiting
        # when an analysis runs long, and then the last frame has no three analysed frames in a row behind it. And
        # no faster than the replicas' stream_max_fps: on a fast host, answers came back in 8 ms, and the sixth
        # frame, past the burst allowance, was dropped for its rate.
        interval_s = 1 / Settings().stream_max_fps
        messages = []
        for _ in range(frames):
            sent_at = time.monotonic()
            stream.send(public_scene())
            messages.append(stream.receive(timeout_s=30))
            time.sleep(max(0.0, sent_at + interval_s - time.monotonic()))
    results = [message for message in messages if isinstance(message, StreamResult)]
    assert len(results) == len(messages), messages
    assert results[-1].seq == frames - 1
    assert results[-1].faces
    assert all(face.track_id is not None for face in results[-1].faces)
    upgrades = [line for line in cluster.access_log.read_text().splitlines() if '"GET /stream HTTP/1.1" 101' in line]
    assert len(upgrades) == 1, "nginx logs the stream once, as a 101 to one replica, when it ends"
