"""Real uvicorn servers on 127.0.0.1 with the shipped models, and where the repository and the shared data are.

Servers run in a thread of the test process (uvicorn skips signal handlers off the main thread), on a free
port, and ``run_server`` returns only once ``/readyz`` says the models are warm. Tests of signals and of the command
itself start ``deepfer serve`` as a process instead (``deepfer_serve``, ``wait_ready``). The fixtures in
``conftest.py`` are built on these; tests import the helpers as ``tests.servers``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from deepfer.server.app import create_app
from deepfer.server.connections import DrainingServer, uvicorn_options
from deepfer.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED = Path(os.environ.get("DEEPFER_SHARED_DIR", REPO.parent / "shared")).resolve()
STARTUP_TIMEOUT_S = 60.0


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that nothing listens on right now.

    Every probe stays bound until all are chosen: probes bound one after another may be given the same port, and
    two replicas started on one port looked ready (the other answered) until the second failed to bind.
    """
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def free_port() -> int:
    return free_ports(1)[0]


@contextmanager
def run_server(settings: Settings) -> Iterator[str]:
    """A real uvicorn serving ``create_app(settings)``, configured and drained as ``deepfer serve`` does it, until
    the block ends; yields its base URL."""
    app = create_app(settings)
    config = uvicorn.Config(app, **{**uvicorn_options(settings), "lifespan": "on"})
    server = DrainingServer(config, app=app, pre_drain_s=settings.pre_drain_s)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{settings.port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            if not thread.is_alive():
                raise RuntimeError("test server exited during startup; see the log above")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"test server not ready within {STARTUP_TIMEOUT_S} s")
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def server_settings(**overrides: Any) -> Settings:
    """Settings for a test server: loopback, a free port, quiet logs, defaults otherwise."""
    return Settings(
        **{"host": "127.0.0.1", "port": free_port(), "access_log": False, "graceful_shutdown_s": 5, **overrides}
    )


@contextmanager
def deepfer_serve(port: int, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``deepfer serve`` as a deployment runs it, its JSON log in a file (a pipe nobody reads would fill and
    block the server); killed and reaped if the test leaves it running."""
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "deepfer.cli", "serve", "--port", str(port)],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            yield server
        finally:
            if server.poll() is None:
                server.kill()
            server.wait(timeout=30)


def wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"deepfer serve exited with {server.returncode} during startup"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"deepfer serve not ready within {STARTUP_TIMEOUT_S} s")
