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

import httpx

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_service(workers: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    """Start the service and wait for /readyz; access log off (it would cost CPU, not tell anything)."""
    port = free_port()
    env = {**os.environ, "DEEPFER_ACCESS_LOG": "false", "DEEPFER_LOG_LEVEL": "warning"}
    command = [
        sys.executable,
        "-m",
        "service.cli",
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
        time.sleep(0.2)
    process.kill()
    process.wait()
    raise SystemExit(f"the service did not become ready within {STARTUP_TIMEOUT_S:.0f} s")
