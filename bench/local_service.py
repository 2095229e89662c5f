"""``deepfer serve`` started by a benchmark on a free 127.0.0.1 port, as a user would run it.

The benchmarks own the process so they can read its CPU time and memory from /proc; shared here so both
measure the same server started the same way.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 120.0
# Settings the benchmarks add to the environment's: the access log would cost CPU and tell nothing.
QUIET: dict[str, object] = {"access_log": False, "log_level": "warning"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _env_value(value: object) -> str:
    """A setting as an environment variable: booleans as pydantic reads them, anything else (paths) verbatim."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def start_service(
    workers: int = 1, settings: dict[str, object] | None = None, poll_s: float = 0.2
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the service with ``QUIET`` and ``settings`` added to the environment's settings; wait for /readyz."""
    port = free_port()
    added = {**QUIET, **(settings or {})}
    env = {**os.environ, **{f"DEEPFER_{name.upper()}": _env_value(value) for name, value in added.items()}}
    command = [
        sys.executable,
        "-m",
        "deepfer.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen(command, cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the service exited with {process.returncode} during startup")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(poll_s)
    process.kill()
    process.wait()
    raise SystemExit(f"the service did not become ready within {STARTUP_TIMEOUT_S:.0f} s")


LOOPBACK = {"127.0.0.1", "localhost"}


def service_target(url: str | None, workers: int = 1) -> tuple[subprocess.Popen[bytes] | None, str]:
    """The service a benchmark measures: ``url`` when given (127.0.0.1 only), else one it starts (and stops)."""
    if url is None:
        return start_service(workers)
    if urlparse(url).hostname not in LOOPBACK:
        raise SystemExit("this benchmark only talks to 127.0.0.1")
    return None, url.rstrip("/")


def effective_settings() -> dict[str, object]:
    """The settings a service started from this environment runs with (defaults included, secrets left out), so
    a result file says what was measured even after the defaults change."""
    from deepfer.settings import Settings

    return Settings(**QUIET).model_dump(mode="json", exclude={"api_keys"})
