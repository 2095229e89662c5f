"""Cold start and memory of one replica: seconds from exec to a 200 from /readyz, then RSS and PSS after traffic.

    python -m bench.startup                          # detect_processes 0 (the default: threads) and 2, 3 starts each
    python -m bench.startup --detect-processes 2 --starts 5

A replica is the serving process and its image worker processes. RSS counts a page once per process that maps
it, so the sum over the tree overstates what the replica costs the machine; PSS (``/proc/PID/smaps_rollup``)
splits each shared page between the processes sharing it, and its sum is the replica's share of memory. Both are
printed. Memory is read after ``--requests`` scenes, since ONNX Runtime and OpenCV allocate on first use.
Printed and saved as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.ceiling import load_images
from bench.local_service import start_service
from bench.record import save
from bench.scenes import DEFAULT_SCENES


@dataclass(frozen=True)
class StartupResult:
    detect_processes: int
    ready_s: list[float]
    ready_median_s: float
    processes: int
    rss_mb: float
    pss_mb: float


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from /proc."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            try:
                pending.extend(int(child) for child in (task / "children").read_text().split())
            except FileNotFoundError:
                continue
    return tree


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """Summed RSS and PSS of the processes, in MB."""
    rss = pss = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in {"Rss", "Pss"}:
                kilobytes = int(value.split()[0])
                rss, pss = (rss + kilobytes, pss) if name == "Rss" else (rss, pss + kilobytes)
    return rss / 1024, pss / 1024


def measure(detect_processes: int, starts: int, images: list[bytes]) -> StartupResult:
    ready = []
    for _ in range(starts):
        began = time.monotonic()
        process, url = start_service(settings={"detect_processes": detect_processes}, poll_s=0.01)
        ready.append(round(time.monotonic() - began, 3))
        try:
            with httpx.Client(base_url=url, timeout=30) as http:
                for data in images:
                    http.post("/predict", files={"file": data}).raise_for_status()
            pids = process_tree(process.pid)
            rss, pss = memory_mb(pids)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return StartupResult(
        detect_processes=detect_processes,
        ready_s=ready,
        ready_median_s=round(statistics.median(ready), 3),
        processes=len(pids),
        rss_mb=round(rss, 1),
        pss_mb=round(pss, 1),
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder of scene images")
    parser.add_argument("--detect-processes", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--starts", type=int, default=3, help="cold starts per setting")
    parser.add_argument("--requests", type=int, default=40, help="scenes sent before memory is read")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images = load_images(args.scenes)[: args.requests]
    load = os.getloadavg()
    print(f"load average {load[0]:.1f}; ready = exec of `deepfer serve` to the first 200 from /readyz")
    print(f"{'detect_processes':>16} {'ready s (median)':>17} {'processes':>10} {'RSS MB':>8} {'PSS MB':>8}")
    results = []
    for count in args.detect_processes:
        result = measure(count, args.starts, images)
        results.append(result)
        print(f"{count:>16} {result.ready_median_s:>17} {result.processes:>10} {result.rss_mb:>8} {result.pss_mb:>8}")
    record = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "load_average_at_start": load}
    save("startup", {**record, "results": [asdict(result) for result in results]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
