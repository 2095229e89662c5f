"""Soak: many clients for a long while against one ``deepfer serve``; errors, latency and the server's memory.

    python -m bench.soak                      # 32 clients for 60 s on the public scenes
    python -m bench.soak --requests 10000     # RSS growth over 10,000 requests (target < 50 MB)
    python -m bench.soak --hostile            # a clean run, then the same good traffic mixed with attacks

``--hostile`` measures twice on the same server: the good clients alone, then the good clients while
``--hostile-clients`` more send bombs and malformed bodies back to back (``tests/hostile_inputs.py``: a pixel bomb
behind a stuffed zero, progressive scan bombs, a header-only gigapixel PNG, a lying WebP canvas, nested JSON, a
5,000-digit integer, a 300-character boundary, a truncated JPEG). Good requests must keep 0 errors and a p99
within 2x of the clean run; every attack must get a 4xx; RSS must stay flat.

The script starts its own ``deepfer serve`` on a free 127.0.0.1 port (it must own the process to read its RSS
from /proc), sends a short unmeasured warm-up so that ONNX Runtime's buffers and the allocator's arenas reach
their working size, then runs closed-loop clients (each sends its next scene as soon as the previous answer
arrives) until ``--duration-s`` passes or ``--requests`` are answered, whichever comes first; both are always
bounded. The server's RSS is sampled throughout.

Zero errors are expected: any status but 200, or a transport error, counts. Growth is measured from after the
warm-up to the end, and the least-squares slope over the run (MB per 1,000 requests) is reported too, because
a plateau and a leak can end at the same figure after a short run but never have the same slope. Results are
printed and saved as JSON under bench/results/ (git-ignored) with the load average, since figures taken on a
machine shared with a training job are depressed. Exit status 1 when there were errors or growth reached
``--max-rss-growth-mb``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import httpx
import numpy as np

from bench.local_service import REPO, effective_settings, start_service
from bench.record import run_header
from bench.scenes import SHARED_DIR
from bench.traffic import Traffic
from tests.hostile_inputs import (
    huge_int_json,
    long_boundary_multipart,
    many_parts_multipart,
    nested_json,
    png_header_only,
    png_idat_bomb,
    progressive_scan_bomb,
    stuffed_zero_pixel_bomb,
    webp_vp8x_canvas,
)

RESULTS = REPO / "bench" / "results"
MB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shared-dir",
        type=Path,
        default=SHARED_DIR,
        help="shared data root (DEEPFER_SHARED_DIR, default ../shared); scenes come from data/scenes_public",
    )
    parser.add_argument("--scenes", type=Path, help="a folder of .jpg scenes instead of the shared public ones")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration-s", type=float, help="measured time cap (default 60; 1800 with --requests)")
    parser.add_argument("--requests", type=int, help="stop after this many answers (default: run for the duration)")
    parser.add_argument("--warmup-requests", type=int, default=200, help="unmeasured, before the RSS baseline")
    parser.add_argument("--sample-interval-s", type=float, default=0.5, help="how often the server's RSS is read")
    parser.add_argument("--max-rss-growth-mb", type=float, default=50.0, help="exit 1 at or above this growth")
    parser.add_argument("--hostile", action="store_true", help="a clean run, then one mixed with attacks")
    parser.add_argument("--hostile-clients", type=int, default=4, help="attacking clients in the hostile run")
    parser.add_argument("--out", type=Path, help="JSON result path (default bench/results/soak-<time>.json)")
    args = parser.parse_args(argv)
    if args.duration_s is None:
        args.duration_s = 60.0 if args.requests is None else 1800.0
    if args.requests is None:
        args.requests = 1_000_000  # a count bound even for a timed run
    args.scenes = args.scenes or args.shared_dir / "data" / "scenes_public"
    return args


def rss_mb(pid: int) -> float:
    """Resident set size of one process, from /proc (the service runs as a single process with workers=1)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Run:
    """What the clients and the sampler record during one measured run."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    rss_samples: list[tuple[float, int, float]] = field(default_factory=list)  # (seconds, answers so far, MB)


async def drive(url: str, images: list[bytes], run: Run, *, clients: int, requests: int, duration_s: float) -> float:
    """Closed-loop clients until ``requests`` answers or ``duration_s``; returns the elapsed seconds."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    sent = 0
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        start = time.monotonic()
        stop_at = start + duration_s

        async def client(offset: int) -> None:
            nonlocal sent
            index = offset
            while sent < requests and time.monotonic() < stop_at:
                sent += 1
                began = time.monotonic()
                try:
                    response = await http.post("/predict", files={"file": images[index % len(images)]})
                    status = str(response.status_code)
                except httpx.HTTPError as error:
                    status = type(error).__name__
                run.latencies_s.append(time.monotonic() - began)
                run.statuses[status] = run.statuses.get(status, 0) + 1
                index += clients

        await asyncio.gather(*(client(i) for i in range(clients)))
        return time.monotonic() - start


def attacks(scene: bytes) -> dict[str, dict[str, object]]:
    """name -> httpx request keywords for POST /predict; each must be answered with a 4xx."""
    boundary_body, boundary_type = long_boundary_multipart()
    parts_body, parts_type = many_parts_multipart(1_000_000)
    webp = cv2.imencode(".webp", cv2.imdecode(np.frombuffer(scene, np.uint8), cv2.IMREAD_COLOR))[1].tobytes()
    json_type = {"content-type": "application/json"}
    return {
        "stuffed-zero pixel bomb": {"files": {"file": stuffed_zero_pixel_bomb()}},
        "6000-scan progressive bomb": {"files": {"file": progressive_scan_bomb(6000, 6000, 6000)}},
        "66-scan 36 Mpx progressive": {"files": {"file": progressive_scan_bomb(6000, 6000, 60)}},
        "header-only gigapixel png": {"files": {"file": png_header_only(100_000, 100_000)}},
        "png inflating 3 GB": {"files": {"file": png_idat_bomb()}},
        "a million multipart parts": {"content": parts_body, "headers": {"content-type": parts_type}},
        "webp canvas lie": {"files": {"file": webp_vp8x_canvas(webp, 9000, 9000)}},
        "nested json": {"content": nested_json(), "headers": json_type},
        "5000-digit integer": {"content": huge_int_json(), "headers": json_type},
        "300-character boundary": {"content": boundary_body, "headers": {"content-type": boundary_type}},
        "truncated jpeg": {"files": {"file": scene[: len(scene) // 2]}},
    }


async def attack(
    url: str, corpus: dict[str, dict[str, object]], statuses: dict[str, int], *, clients: int, duration_s: float
) -> None:
    """Attacking clients, each cycling through the corpus until ``duration_s``; statuses by attack name."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        stop_at = time.monotonic() + duration_s

        async def client(offset: int) -> None:
            names = list(corpus)
            index = offset
            while time.monotonic() < stop_at:
                name = names[index % len(names)]
                try:
                    status = str((await http.post("/predict", **corpus[name])).status_code)  # type: ignore[arg-type]
                except httpx.HTTPError as error:
                    status = type(error).__name__
                key = f"{name}: {status}"
                statuses[key] = statuses.get(key, 0) + 1
                index += 1

        await asyncio.gather(*(client(i) for i in range(clients)))


async def sample_rss(pid: int, interval_s: float, run: Run, start: float) -> None:
    while True:
        run.rss_samples.append((round(time.monotonic() - start, 2), len(run.latencies_s), round(rss_mb(pid), 1)))
        await asyncio.sleep(interval_s)


async def measured(
    url: str, images: list[bytes], pid: int, args: argparse.Namespace, attacked: dict[str, int] | None = None
) -> tuple[Run, float]:
    """One measured run of the good clients; with ``attacked``, attacking clients run alongside."""
    run = Run()
    sampler = asyncio.create_task(sample_rss(pid, args.sample_interval_s, run, time.monotonic()))
    good = drive(url, images, run, clients=args.clients, requests=args.requests, duration_s=args.duration_s)
    try:
        if attacked is None:
            elapsed = await good
        else:
            corpus = attacks(images[0])
            bad = attack(url, corpus, attacked, clients=args.hostile_clients, duration_s=args.duration_s)
            elapsed, _ = await asyncio.gather(good, bad)
    finally:
        sampler.cancel()
    run.rss_samples.append((round(elapsed, 2), len(run.latencies_s), round(rss_mb(pid), 1)))
    return run, elapsed


@dataclass(frozen=True)
class Summary(Traffic):
    rss_ready_mb: float
    rss_baseline_mb: float
    rss_end_mb: float
    rss_max_mb: float
    rss_growth_mb: float
    rss_slope_mb_per_1k_requests: float


def summarise(run: Run, elapsed: float, clients: int, rss_ready: float, rss_baseline: float) -> Summary:
    answers = np.array([answered for _, answered, _ in run.rss_samples], dtype=np.float64)
    memory = np.array([mb for _, _, mb in run.rss_samples])
    # Least-squares MB per answer: the trend, where one end point alone also carries the allocator's noise.
    slope = float(np.polyfit(answers, memory, 1)[0]) * 1000 if np.ptp(answers) > 0 else 0.0
    return Summary(
        **Traffic.figures(clients, run.latencies_s, run.statuses, elapsed),
        rss_ready_mb=round(rss_ready, 1),
        rss_baseline_mb=round(rss_baseline, 1),
        rss_end_mb=float(memory[-1]),
        rss_max_mb=float(memory.max()),
        rss_growth_mb=round(float(memory[-1]) - rss_baseline, 1),
        rss_slope_mb_per_1k_requests=round(slope, 3),
    )


def report(label: str, summary: Summary) -> None:
    print(
        f"{label}: {summary.requests} good requests in {summary.seconds} s ({summary.images_per_s} img/s), "
        f"{summary.errors} errors {summary.status_counts}\n"
        f"latency ms: p50 {summary.p50_ms}  p95 {summary.p95_ms}  p99 {summary.p99_ms}  max {summary.max_ms}\n"
        f"server RSS MB: ready {summary.rss_ready_mb}, at start {summary.rss_baseline_mb}, "
        f"end {summary.rss_end_mb}, max {summary.rss_max_mb}; growth {summary.rss_growth_mb} MB "
        f"(slope {summary.rss_slope_mb_per_1k_requests} MB per 1k requests)"
    )


def stop_service(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images = [path.read_bytes() for path in sorted(args.scenes.glob("*.jpg"))]
    if not images:
        raise SystemExit(f"no .jpg scenes at {args.scenes} (set --shared-dir, DEEPFER_SHARED_DIR or --scenes)")
    load_at_start = os.getloadavg()
    process, url = start_service(workers=1)
    try:
        rss_ready = rss_mb(process.pid)
        if args.warmup_requests:
            warm_up = drive(
                url, images, Run(), clients=args.clients, requests=args.warmup_requests, duration_s=args.duration_s
            )
            asyncio.run(warm_up)
        rss_baseline = rss_mb(process.pid)
        print(
            f"{len(images)} scenes, {args.clients} clients -> {url}; up to {args.requests} requests or "
            f"{args.duration_s:.0f} s; load average {load_at_start[0]:.1f}; RSS {rss_baseline:.1f} MB after warm-up"
        )
        run, elapsed = asyncio.run(measured(url, images, process.pid, args))
        attacked: dict[str, int] = {}
        if args.hostile:
            hostile_run, hostile_elapsed = asyncio.run(measured(url, images, process.pid, args, attacked))
    finally:
        stop_service(process)
    summary = summarise(run, elapsed, args.clients, rss_ready, rss_baseline)
    report("clean" if args.hostile else "run", summary)
    failed = summary.errors > 0 or summary.rss_growth_mb >= args.max_rss_growth_mb
    hostile: dict[str, object] | None = None
    if args.hostile:
        under_attack = summarise(hostile_run, hostile_elapsed, args.clients, rss_ready, summary.rss_end_mb)
        report("hostile", under_attack)
        refused_badly = {key: count for key, count in attacked.items() if not key.rsplit(": ", 1)[1].startswith("4")}
        p99_ratio = round(under_attack.p99_ms / summary.p99_ms, 2)
        print(f"attacks answered {attacked}\ngood-request p99 under attack / clean: {p99_ratio}")
        failed |= under_attack.errors > 0 or bool(refused_badly) or p99_ratio > 2
        failed |= under_attack.rss_end_mb - rss_baseline >= args.max_rss_growth_mb
        hostile = {"summary": asdict(under_attack), "attacks": attacked, "p99_ratio": p99_ratio}
    record = {
        **run_header(load_at_start),
        "scenes": str(args.scenes),
        "limits": {"requests": args.requests, "duration_s": args.duration_s, "warmup_requests": args.warmup_requests},
        "settings": effective_settings(),
        "summary": asdict(summary),
        "rss_samples": [{"s": s, "answers": answers, "mb": mb} for s, answers, mb in run.rss_samples],
        "hostile": hostile,
    }
    out = args.out or RESULTS / f"soak-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
