"""HTTP load on the public scenes: images/s and p50/p95/p99 latency at 1, 4, 16 and 64 concurrent clients.

    python -m bench.http_load                       # starts `deepfer serve` on a free 127.0.0.1 port
    python -m bench.http_load --url http://127.0.0.1:8000 --duration-s 20
    python -m bench.http_load --ceiling              # and the no-HTTP 2-process ceiling around each level
    python -m bench.http_load --hog 1                # with one core taken by a CPU hog during each level
    python -m bench.http_load --generator wrk        # load from wrk (C) instead of httpx: less CPU taken
    python -m bench.http_load --generator wrk --ceiling --clients 16 64 --runs 5   # the acceptance run (#28)

Each level runs a short warm-up, then closed-loop clients (each sends its next scene as soon as the previous
answer arrives) until ``--duration-s`` passes or ``--max-requests`` are sent, whichever comes first. Only
127.0.0.1 is ever contacted. Results are printed and saved as JSON under bench/results/ (git-ignored), with
the machine's load average, because figures on a machine shared with a training job are depressed.

The load generator runs on the same cores as the service, so its own CPU per request is reported too: what it
takes, the service cannot have. The service's own CPU (its process tree, /proc) per image answered is the figure
that does not depend on the generator. ``--ceiling`` runs ``bench.ceiling``'s 2x1 layout before each level and
after the last, with the service started and idle, and gives each level's images/s as a share of the mean of the
two ceilings around it (``of ceil``) and its server CPU per image as a multiple of theirs (``cpu x ceil``). Why
around each level: a shared VM's own speed drifts (2026-12-03: the ceiling moved from 340 to 249 images/s between
two runs a minute apart), and a level compared with a ceiling taken before that drift reports the host's change as
the service's overhead. ``drift`` is how far the two ceilings around a level differ, as a share of their mean; a
level whose ceilings differ by more than ``--max-drift`` is marked, and its ratios are not evidence either way.
``idle`` is the machine's idle cores over the level: cores the service left unused although clients were waiting,
the mark of a serial section such as the GIL. ``--runs N`` repeats the whole benchmark (a fresh service unless
``--url``, every level with its ceilings) N times in a row and ends with one line per run and level. ``--hog N``
starts N processes that spin through each level (not its ceilings), the "CPU taken by another tenant" case:
throughput should fall in proportion to the cores left.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx

from bench.ceiling import CeilingResult, Layout
from bench.ceiling import measure as measure_ceiling
from bench.classifier import cpu_flags
from bench.local_service import REPO, effective_settings, service_target
from bench.record import save
from bench.scenes import DEFAULT_SCENES
from bench.traffic import Traffic


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
    client_cpu_ms_per_request: float
    idle_cores: float


def cpu_ticks() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine so far, from /proc/stat's first line."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)


def idle_cores_since(start: tuple[int, int]) -> float:
    """How many cores stood idle on average since ``start`` (idle + iowait share times the core count)."""
    idle, total = cpu_ticks()
    return round((idle - start[0]) / max(total - start[1], 1) * (os.cpu_count() or 1), 2)


def _spin(deadline: float) -> None:
    while time.monotonic() < deadline:
        pass


@contextmanager
def cpu_hogs(count: int, seconds: float) -> Iterator[None]:
    """``count`` processes that keep a core busy each, for at most ``seconds`` and never past the block."""
    context = multiprocessing.get_context("spawn")
    hogs = [context.Process(target=_spin, args=(time.monotonic() + seconds,), daemon=True) for _ in range(count)]
    for hog in hogs:
        hog.start()
    try:
        yield
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an already running service on 127.0.0.1 (default: start one)")
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder of scene images")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--duration-s", type=float, default=15.0, help="measured time per level")
    parser.add_argument("--warmup-s", type=float, default=2.0, help="unmeasured time per level")
    parser.add_argument("--max-requests", type=int, default=3000, help="cap on measured requests per level")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the started service")
    parser.add_argument(
        "--generator", choices=("httpx", "wrk"), default="httpx", help="load generator (wrk: less CPU per request)"
    )
    parser.add_argument("--ceiling", action="store_true", help="measure the no-HTTP 2x1 ceiling around each level")
    parser.add_argument(
        "--max-drift", type=float, default=0.05, help="mark a level whose two ceilings differ by more (share of mean)"
    )
    parser.add_argument("--hog", type=int, default=0, help="CPU-hog processes running beside the service")
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole benchmark this many times in a row")
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
        ticks_start = cpu_ticks()
        own_start = time.process_time()
        await warmup
        own_used = time.process_time() - own_start
        cpu_used = cpu_seconds(server_pid) - cpu_start if server_pid else 0.0
        idle = idle_cores_since(ticks_start)
        elapsed = min(time.monotonic(), stop_at) - measure_from
    ok = statuses.get("200", 0)
    return LevelResult(
        **Traffic.figures(clients, latencies, statuses, elapsed),
        faces_per_s=round(faces / elapsed, 1),
        server_cpu_ms_per_image=round(cpu_used * 1000 / ok, 2) if server_pid and ok else None,
        client_cpu_ms_per_request=round(own_used * 1000 / max(len(latencies), 1), 2),
        idle_cores=idle,
    )


WRK_SCRIPT = REPO / "bench" / "wrk_predict.lua"
IN_FLIGHT = re.compile(r"^deepfer_images_in_flight (\S+)$", re.MULTILINE)


def wait_until_idle(url: str, timeout_s: float = 30.0) -> None:
    """Wait until the service has no image in flight. wrk ends a run by dropping its connections, and the work
    they had started goes on (and counts against max_concurrent_images) until it ends; a run started at once
    would find the slots taken and measure 503s that no client caused."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = IN_FLIGHT.search(httpx.get(f"{url}/metrics", timeout=5).text)
        if found is None or float(found.group(1)) == 0:
            return
        time.sleep(0.1)


def run_level_wrk(
    url: str, paths: list[Path], clients: int, args: argparse.Namespace, server_pid: int | None
) -> LevelResult:
    """The same closed loop from wrk (C, one thread): a fraction of httpx's CPU per request, so on a 2-core
    machine the service gets the cores a Python load generator would take (``client ms`` shows both)."""
    command = ["wrk", "-t1", f"-c{clients}", "--timeout", "30s", "-s", str(WRK_SCRIPT), url, "--", *map(str, paths)]
    subprocess.run([*command[:3], f"-d{max(1, round(args.warmup_s))}s", *command[3:]], capture_output=True, check=True)
    wait_until_idle(url)
    cpu_start = cpu_seconds(server_pid) if server_pid else 0.0
    ticks_start = cpu_ticks()
    own_start = os.times()
    done = subprocess.run(
        [*command[:3], f"-d{max(1, round(args.duration_s))}s", *command[3:]], capture_output=True, text=True, check=True
    )
    own = os.times()
    cpu_used = cpu_seconds(server_pid) - cpu_start if server_pid else 0.0
    idle = idle_cores_since(ticks_start)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    statuses = {str(code): count for code, count in figures["statuses"].items()}
    for kind in ("connect", "read", "write", "timeout"):
        if figures[kind]:
            statuses[kind] = figures[kind]
    seconds = figures["duration_us"] / 1e6
    requests = sum(statuses.values())
    ok = statuses.get("200", 0)
    return LevelResult(
        clients=clients,
        requests=requests,
        errors=requests - ok,
        status_counts=statuses,
        seconds=round(seconds, 2),
        images_per_s=round(ok / seconds, 1),
        p50_ms=round(figures["p50_us"] / 1000, 1),
        p95_ms=round(figures["p95_us"] / 1000, 1),
        p99_ms=round(figures["p99_us"] / 1000, 1),
        max_ms=round(figures["max_us"] / 1000, 1),
        faces_per_s=0.0,  # wrk does not read the answers' faces
        server_cpu_ms_per_image=round(cpu_used * 1000 / ok, 2) if server_pid and ok else None,
        client_cpu_ms_per_request=round(
            (own.children_user + own.children_system - own_start.children_user - own_start.children_system)
            * 1000
            / max(requests, 1),
            2,
        ),
        idle_cores=idle,
    )


COLUMNS = ("clients", "requests", "errors", "img/s", "of ceil", "p50 ms", "p95 ms", "p99 ms", "cpu ms/img")


Around = tuple[CeilingResult, CeilingResult] | None  # the ceilings measured just before and just after a level


def versus_ceiling(result: LevelResult, around: Around) -> dict[str, float | None]:
    """The two acceptance figures of a level, its images/s and its server CPU per image, each over the mean of the
    ceilings around it, and how far those two differ (``ceiling_drift``)."""
    if around is None:
        return {"images_per_s_vs_ceiling": None, "server_cpu_vs_ceiling": None, "ceiling_drift": None}
    before, after = around
    images_per_s = (before.images_per_s + after.images_per_s) / 2
    cpu_ms_per_image = (before.cpu_ms_per_image + after.cpu_ms_per_image) / 2
    cpu = result.server_cpu_ms_per_image
    return {
        "images_per_s_vs_ceiling": round(result.images_per_s / images_per_s, 3),
        "server_cpu_vs_ceiling": round(cpu / cpu_ms_per_image, 3) if cpu else None,
        "ceiling_drift": round(abs(before.images_per_s - after.images_per_s) / images_per_s, 3),
    }


def drift_mark(drift: float | None, max_drift: float) -> str:
    """A level's ceiling drift as printed: '-' without ceilings, '!' after it when past ``--max-drift``."""
    return "-" if drift is None else f"{drift}{'!' if drift > max_drift else ''}"


def print_level(result: LevelResult, around: Around, max_drift: float) -> None:
    ratios = versus_ceiling(result, around)
    values = (
        result.clients,
        result.requests,
        result.errors,
        result.images_per_s,
        ratios["images_per_s_vs_ceiling"] or "-",
        result.p50_ms,
        result.p95_ms,
        result.p99_ms,
        result.server_cpu_ms_per_image or "-",
        ratios["server_cpu_vs_ceiling"] or "-",
        drift_mark(ratios["ceiling_drift"], max_drift),
        result.idle_cores,
        result.client_cpu_ms_per_request,
    )
    print(" ".join(f"{value:>10}" for value in values))


def run_once(args: argparse.Namespace, paths: list[Path], images: list[bytes]) -> dict[str, Any]:
    """One whole benchmark: a fresh service (unless ``--url``) at each level, with ``--ceiling`` a ceiling before the
    first level and after each (the service idle meanwhile, outside any ``--hog``)."""
    process, url = service_target(args.url, args.workers)
    ceilings: list[CeilingResult] = []

    def ceiling() -> None:
        wait_until_idle(url)  # images wrk left in flight would share the cores with the ceiling
        ceilings.append(measure_ceiling(Layout(2, 1), images, args.duration_s))
        print(f"no-HTTP ceiling 2x1: {ceilings[-1].images_per_s} img/s, {ceilings[-1].cpu_ms_per_image} ms CPU/image")

    try:
        model = httpx.get(f"{url}/model", timeout=10).json()
        load_before = os.getloadavg()
        print(f"{len(images)} scenes -> {url} (model {model.get('version')}), load average {load_before[0]:.1f}")
        print(" ".join(f"{name:>10}" for name in (*COLUMNS, "cpu x ceil", "drift", "idle", "client ms")))
        levels = []
        if args.ceiling:
            ceiling()
        for clients in args.clients:
            # A bound, not the lifetime: the hogs are stopped when the level ends (wrk may wait 30 s for idle first).
            with cpu_hogs(args.hog, args.warmup_s + args.duration_s + 120):
                pid = process.pid if process else None
                if args.generator == "wrk":
                    levels.append(run_level_wrk(url, paths, clients, args, pid))
                else:
                    levels.append(asyncio.run(run_level(url, images, clients, args, pid)))
            if args.ceiling:
                ceiling()  # after this level, before the next
            print_level(levels[-1], (ceilings[-2], ceilings[-1]) if ceilings else None, args.max_drift)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
    # Level i ran between ceilings i and i + 1.
    arounds: list[Around] = list(pairwise(ceilings)) if ceilings else [None] * len(levels)
    return {
        "load_average_at_start": load_before,
        "model_version": model.get("version"),
        "url": url,
        "ceilings": [asdict(measured) for measured in ceilings],
        "levels": [
            {**asdict(level), **versus_ceiling(level, around)} for level, around in zip(levels, arounds, strict=True)
        ],
    }


def print_summary(runs: list[dict[str, Any]], max_drift: float) -> None:
    """One line per run and level: the acceptance figures side by side, so the worst run is read, not the best."""
    print("run  clients  img/s vs ceiling  server CPU vs ceiling  ceiling drift  p99 ms  errors  idle cores")
    for number, run in enumerate(runs, 1):
        for level in run["levels"]:
            print(
                f"{number:>3} {level['clients']:>8} {level['images_per_s_vs_ceiling'] or '-':>17}"
                f" {level['server_cpu_vs_ceiling'] or '-':>22} {drift_mark(level['ceiling_drift'], max_drift):>14}"
                f" {level['p99_ms']:>7} {level['errors']:>7} {level['idle_cores']:>11}"
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.scenes.is_dir():
        raise SystemExit(f"scenes not found at {args.scenes} (set DEEPFER_SHARED_DIR or --scenes)")
    paths = sorted(args.scenes.glob("*.jpg"))
    images = [path.read_bytes() for path in paths]
    if args.generator == "wrk" and not shutil.which("wrk"):
        raise SystemExit("--generator wrk needs wrk on PATH (Debian: apt-get install wrk)")
    runs = []
    for number in range(1, args.runs + 1):
        if args.runs > 1:
            print(f"--- run {number} of {args.runs}")
        runs.append(run_once(args, paths, images))
    if args.runs > 1:
        print_summary(runs, args.max_drift)
    record = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "tag": args.tag,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "cpu_flags": cpu_flags()},
        "service": {
            "workers": args.workers if args.url is None else None,
            "settings": effective_settings() if args.url is None else None,
        },
        "duration_s": args.duration_s,
        "generator": args.generator,
        "cpu_hogs": args.hog,
        "max_drift": args.max_drift,
        "runs": runs,
    }
    save("http_load", record, args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
