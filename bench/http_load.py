"""HTTP load on the public scenes: images/s and p50/p95/p99 latency at 1, 4, 16 and 64 concurrent clients.

    python -m bench.http_load                       # starts `deepfer serve` on a free 127.0.0.1 port
    python -m bench.http_load --url http://127.0.0.1:8000 --duration-s 20

Each level runs a short warm-up, then closed-loop clients (each sends its next scene as soon as the previous
answer arrives) until ``--duration-s`` passes or ``--max-requests`` are sent, whichever comes first. Only
127.0.0.1 is ever contacted. Results are printed and saved as JSON under bench/results/ (git-ignored), with
the machine's load average, because figures on a machine shared with a training job are depressed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx

from bench.local_service import REPO, effective_settings, start_service
from bench.scenes import DEFAULT_SCENES
from bench.traffic import Traffic

RESULTS = REPO / "bench" / "results"
LOOPBACK = {"127.0.0.1", "localhost"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants (uvicorn workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


@dataclass(frozen=True)
class LevelResult(Traffic):
    faces_per_s: float
    server_cpu_ms_per_image: float | None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an already running service on 127.0.0.1 (default: start one)")
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder of scene images")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--duration-s", type=float, default=15.0, help="measured time per level")
    parser.add_argument("--warmup-s", type=float, default=2.0, help="unmeasured time per level")
    parser.add_argument("--max-requests", type=int, default=3000, help="cap on measured requests per level")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the started service")
    parser.add_argument("--tag", default="", help="label stored with the results")
    return parser.parse_args(argv)


async def run_level(
    url: str, images: list[bytes], clients: int, args: argparse.Namespace, server_pid: int | None
) -> LevelResult:
    """Closed-loop clients; latencies and statuses of the requests sent after the warm-up only.

    When the bench started the service it also measures the service's CPU time per image: on a machine shared
    with other work, that (not images/s) is the figure that says what two idle cores would sustain.
    """
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    faces = 0
    sent = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        start = time.monotonic()
        measure_from = start + args.warmup_s
        stop_at = measure_from + args.duration_s

        async def client(offset: int) -> None:
            nonlocal faces, sent
            index = offset
            while time.monotonic() < stop_at and sent < args.max_requests:
                began = time.monotonic()
                measured = began >= measure_from
                if measured:
                    sent += 1
                try:
                    response = await http.post("/predict", files={"file": images[index % len(images)]})
                    status = str(response.status_code)
                    found = len(response.json().get("faces", [])) if response.status_code == 200 else 0
                except httpx.HTTPError as error:
                    status, found = type(error).__name__, 0
                index += clients
                if measured:
                    latencies.append(time.monotonic() - began)
                    statuses[status] = statuses.get(status, 0) + 1
                    faces += found

        warmup = asyncio.gather(*(client(i) for i in range(clients)))
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        cpu_start = cpu_seconds(server_pid) if server_pid else 0.0
        await warmup
        cpu_used = cpu_seconds(server_pid) - cpu_start if server_pid else 0.0
        elapsed = min(time.monotonic(), stop_at) - measure_from
    ok = statuses.get("200", 0)
    return LevelResult(
        **Traffic.figures(clients, latencies, statuses, elapsed),
        faces_per_s=round(faces / elapsed, 1),
        server_cpu_ms_per_image=round(cpu_used * 1000 / ok, 2) if server_pid and ok else None,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.scenes.is_dir():
        raise SystemExit(f"scenes not found at {args.scenes} (set DEEPFER_SHARED_DIR or --scenes)")
    images = [path.read_bytes() for path in sorted(args.scenes.glob("*.jpg"))]
    process = None
    if args.url:
        if urlparse(args.url).hostname not in LOOPBACK:
            raise SystemExit("this benchmark only talks to 127.0.0.1")
        url = args.url.rstrip("/")
    else:
        process, url = start_service(args.workers)
    try:
        model = httpx.get(f"{url}/model", timeout=10).json()
        load_before = os.getloadavg()
        print(f"{len(images)} scenes -> {url} (model {model.get('version')}), load average {load_before[0]:.1f}")
        columns = ("clients", "requests", "errors", "img/s", "faces/s", "p50 ms", "p95 ms", "p99 ms", "cpu ms/img")
        print(" ".join(f"{name:>10}" for name in columns))
        levels = []
        for clients in args.clients:
            result = asyncio.run(run_level(url, images, clients, args, process.pid if process else None))
            levels.append(result)
            values = (
                result.clients,
                result.requests,
                result.errors,
                result.images_per_s,
                result.faces_per_s,
                result.p50_ms,
                result.p95_ms,
                result.p99_ms,
                result.server_cpu_ms_per_image or "-",
            )
            print(" ".join(f"{value:>10}" for value in values))
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    record = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "tag": args.tag,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_at_start": load_before},
        "service": {
            "url": url,
            "workers": args.workers if process else None,
            "model_version": model.get("version"),
            "settings": effective_settings() if process else None,
        },
        "duration_s": args.duration_s,
        "levels": [asdict(level) for level in levels],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"http_load-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}{'-' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
