"""Shared fixtures: the shared-data location, and real uvicorn servers on 127.0.0.1 with the shipped models.

Servers run in a thread of the test process (uvicorn skips signal handlers off the main thread), on a free
port, and a fixture returns only once ``/readyz`` says the models are warm. ``live_server`` starts extra
servers with other settings (API keys, tiny limits) for the tests that need them.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from service.app import create_app
from service.server import uvicorn_options
from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED = Path(os.environ.get("DEEPFER_SHARED_DIR", REPO.parent / "shared")).resolve()
STARTUP_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def run_server(settings: Settings) -> Iterator[str]:
    """A real uvicorn serving ``create_app(settings)``, configured as ``deepfer serve`` configures it, until the
    block ends; yields its base URL."""
    config = uvicorn.Config(create_app(settings), **{**uvicorn_options(settings), "lifespan": "on"})
    server = uvicorn.Server(config)
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


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """The session's main server: default settings except a wider batching window, so concurrent requests
    reliably meet in one classifier run even on a loaded 2-core machine."""
    with run_server(server_settings(max_wait_ms=20)) as url:
        yield url


@pytest.fixture(scope="session")
def live_server() -> Callable[..., Any]:
    """``with live_server(api_keys=[...]) as url:`` starts a further real server with those settings."""
    return lambda **overrides: run_server(server_settings(**overrides))


@pytest.fixture
def client(server_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set DEEPFER_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def scenes_dir(shared_dir: Path) -> Path:
    scenes = shared_dir / "data" / "scenes_public"
    if not (scenes / "scenes.json").is_file():
        pytest.skip(f"public scenes not found at {scenes}")
    return scenes


@pytest.fixture(scope="session")
def committed_scenes() -> list[dict[str, Any]]:
    """The two public scenes committed in tests/data/scenes, with their ground truth."""
    scenes: list[dict[str, Any]] = json.loads((DATA / "scenes" / "scenes.json").read_text())
    return scenes
