"""Memory over many model reloads: the server's RSS after each ``POST /admin/reload``, printed as a curve.

    python -m bench.reload_memory                                          # 100 reloads of the shipped int8 model
    python -m bench.reload_memory --reloads 45 --classifier service/deepfer/models/emotion.onnx   # the float32 one

The script starts its own ``deepfer serve`` on a free 127.0.0.1 port with an admin token (it must own the process
to read its memory from /proc), sends ``--requests`` scenes so the first model is warm, then reloads
``--reloads`` times, each followed by ``--requests`` scenes so the new model serves before memory is read: a
reload's cost is what stays resident once the old model has been retired and the new one has worked. Memory is
the RSS summed over the serving process and its image workers (``bench.startup.process_tree``).

A reload that leaks grows the curve by the same step every time, where allocator noise goes up and down: the
median pairwise slope over the run (MB per reload) separates the two, and growth is measured from after the first
reload (which pays for lazily allocated buffers) to the end. Printed and saved as JSON under bench/results/;
exit status 1 when growth reached ``--max-growth-mb`` (issue 25: within 50 MB after 100 reloads).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

from bench.local_service import start_service
from bench.record import run_header, save
from bench.scenes import DEFAULT_SCENES
from bench.startup import memory_mb, process_tree

TOKEN = "reload-memory-bench"


@dataclass(frozen=True)
class Curve:
    """RSS after each reload (index 0: before the first), and what it says."""

    rss_mb: list[float]
    growth_mb: float  # after the last reload minus after the first
    slope_mb_per_reload: float
    reload_s: float  # mean seconds per reload call


def median_slope(values: list[float]) -> float:
    """Theil-Sen: the median of the slopes between every pair of points. A leak raises every pair's slope; the
    allocator's jumps of ~10 MB at single points (which tilted a least-squares fit to 0.6 MB per reload on a loaded
    machine with no leak) move only the pairs that touch them."""
    if len(values) < 2:
        return 0.0
    y = np.asarray(values, dtype=np.float64)
    i, j = np.triu_indices(len(y), k=1)
    return float(np.median((y[j] - y[i]) / (j - i)))


def reload_curve(url: str, pid: int, images: list[bytes], reloads: int, requests: int) -> Curve:
    """Reload ``reloads`` times against a running server (``pid``), reading its RSS after each; see the docstring."""
    admin = {"Authorization": f"Bearer {TOKEN}"}
    rss, spent_s = [], 0.0
    with httpx.Client(base_url=url, timeout=60) as http:
        for number in range(reloads + 1):
            if number:
                began = time.monotonic()
                http.post("/admin/reload", headers=admin).raise_for_status()
                spent_s += time.monotonic() - began
            for index in range(requests):
                http.post("/predict", files={"file": images[index % len(images)]}).raise_for_status()
            rss.append(round(memory_mb(process_tree(pid))[0], 1))
    after_first = np.array(rss[1:])
    slope = median_slope(after_first)
    return Curve(rss, round(rss[-1] - rss[min(1, reloads)], 1), round(slope, 3), round(spent_s / max(reloads, 1), 3))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reloads", type=int, default=100)
    parser.add_argument("--requests", type=int, default=4, help="scenes sent after each reload, before RSS is read")
    parser.add_argument("--classifier", type=Path, help="DEEPFER_CLASSIFIER_PATH of the server (default: shipped)")
    parser.add_argument("--scenes", type=Path, default=DEFAULT_SCENES, help="folder of .jpg scenes")
    parser.add_argument("--print-every", type=int, default=10, help="print one curve point per this many reloads")
    parser.add_argument("--max-growth-mb", type=float, default=50.0, help="exit 1 at or above this growth")
    args = parser.parse_args(argv)
    if args.reloads < 1 or args.requests < 1:
        parser.error("--reloads and --requests must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images = [path.read_bytes() for path in sorted(args.scenes.glob("*.jpg"))]
    if not images:
        raise SystemExit(f"no .jpg scenes at {args.scenes}")
    settings: dict[str, object] = {"admin_token": TOKEN}
    if args.classifier is not None:
        settings["classifier_path"] = args.classifier.resolve()
    load_at_start = os.getloadavg()
    process, url = start_service(settings=settings)
    try:
        curve = reload_curve(url, process.pid, images, args.reloads, args.requests)
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"load average {load_at_start[0]:.1f}; RSS after each reload ({args.requests} scenes after each), MB")
    for number in sorted({*range(0, args.reloads + 1, args.print_every), 1, args.reloads}):
        print(f"{number:>8} {curve.rss_mb[number]:>8.1f}")
    print(
        f"growth after the first reload {curve.growth_mb:+.1f} MB over {args.reloads - 1} reloads; slope "
        f"{curve.slope_mb_per_reload:+.3f} MB per reload; {curve.reload_s:.2f} s per reload call"
    )
    record = {
        **run_header(load_at_start),
        "reloads": args.reloads,
        "requests_per_reload": args.requests,
        "classifier": str(args.classifier or "shipped"),
        "curve": asdict(curve),
    }
    save("reload_memory", record)
    return 1 if curve.growth_mb >= args.max_growth_mb else 0


if __name__ == "__main__":
    raise SystemExit(main())
