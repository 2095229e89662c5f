"""Classifier cost: faces/s and CPU per face of ONNX files at several batch sizes, sessions opened as the service does.

    python -m bench.classifier [--model A.onnx [B.onnx ...]] [--threads 1] [--batches 1 2 8 32 64] [--seconds 5]
                               [--rounds 1]

Sessions come from ``deepfer.engine.onnx_sessions.open_session``, the service's own (spinning off, one inter-op
thread, ``--threads`` intra-op threads: the service's default is 1), so the figures are the service's. Two
figures per file and batch: wall-clock faces/s and **CPU microseconds per face** (the process's CPU time over
the runs). They disagree exactly when ORT's threads wait or spin, which is what made earlier wall-clock figures
(2 threads, spinning on) contradict a one-thread loop. Several files are measured side by side: each round runs
every file at each batch size in turn, so the speed drift of a shared VM falls on all of them alike; the figure
per file and batch is the median over rounds. Prints a table and writes bench/results/classifier.json. Real
committed faces are tiled to fill each batch. Bounded: each measurement runs for ``--seconds`` after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from deepfer.engine.align import face_from_crop, to_batch
from deepfer.engine.onnx_sessions import open_session

REPO = Path(__file__).resolve().parents[1]


def real_faces() -> list[np.ndarray]:
    import cv2

    return [face_from_crop(cv2.imread(str(p))) for p in sorted((REPO / "tests/data/faces").rglob("*.jpg"))]


def cpu_flags() -> list[str]:
    """The instruction sets that decide int8 speed (VNNI above all), so a result file names its host's kind."""
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return sorted(word for word in words if word.startswith(("avx512", "avx_vnni", "amx")) or word in ("avx2", "fma"))


def measure(session: ort.InferenceSession, batch: np.ndarray, seconds: float) -> dict[str, float]:
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: batch})
    latencies: list[float] = []
    cpu_start = time.process_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, {name: batch})
        latencies.append(time.perf_counter() - start)
    faces = len(batch) * len(latencies)
    return {
        "batch": len(batch),
        "runs": len(latencies),
        "faces_per_second": round(faces / sum(latencies), 1),
        "cpu_us_per_face": round((time.process_time() - cpu_start) * 1e6 / faces, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, nargs="+", default=[REPO / "service/deepfer/models/emotion.onnx"])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (the service's default: 1)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 8, 32, 64])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/classifier.json")
    args = parser.parse_args()

    sessions = [open_session(path, provider="cpu", intra_op_threads=args.threads) for path in args.model]
    faces = real_faces()
    batches = {size: to_batch([faces[i % len(faces)] for i in range(size)]) for size in args.batches}
    runs: dict[tuple[int, int], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for size, batch in batches.items():
            for index, session in enumerate(sessions):
                runs.setdefault((index, size), []).append(measure(session, batch, args.seconds))
    records = []
    for index, (path, session) in enumerate(zip(args.model, sessions, strict=True)):
        version = session.get_modelmeta().custom_metadata_map.get("version", "unknown")
        shown = path.resolve().relative_to(REPO) if path.resolve().is_relative_to(REPO) else path
        results = []
        for size in batches:
            rounds = runs[(index, size)]
            median = statistics.median(r["faces_per_second"] for r in rounds)
            cpu = statistics.median(r["cpu_us_per_face"] for r in rounds)
            results.append({"batch": size, "faces_per_second": median, "cpu_us_per_face": cpu, "rounds": rounds})
            print(
                f"{shown} ({version}) batch {size:>3}: {median:>9.1f} faces/s, {cpu:>7.1f} us CPU per face"
                f"  (medians of {len(rounds)} rounds)"
            )
        records.append({"model": str(shown), "model_version": version, "results": results})
    record = {
        "models": records,
        "threads": args.threads,
        "seconds": args.seconds,
        "onnxruntime": ort.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpu_flags": cpu_flags(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
