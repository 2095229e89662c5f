"""Shared fixtures: the shared-data location, and real uvicorn servers on 127.0.0.1 with the shipped models.

``server_url`` is the session's main server; ``live_server`` starts extra servers with other settings (API keys,
tiny limits) for the tests that need them. The helpers behind them are ``tests.servers``.

Property tests (Hypothesis: the decoder, header and Schemathesis fuzzers) draw the same examples on every run, so
CI goes red only on a change, never on a case it happened to draw for the first time, nor stays green by luck.
``DEEPFER_FUZZ_EXPLORE=1`` draws new examples each run instead, to look for bugs these miss; to be able to replay
such a draw, choose its seed up front: ``DEEPFER_FUZZ_EXPLORE=1 pytest --hypothesis-seed=N`` (the repeatable profile
ignores a seed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings

from tests.servers import DATA, SHARED, run_server, server_settings

# Loaded here, before any test module builds its own ``settings(...)`` on top of the default profile. No example
# database: a failure is replayed from its seed, and nothing is written into the checkout.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False, database=None)
settings.load_profile("explore" if os.environ.get("DEEPFER_FUZZ_EXPLORE", "") not in ("", "0") else "repeatable")


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
