"""Classifier throughput: faces/s of ONNX files at batch 1 and 64 with ONNX Runtime.

    python -m bench.classifier [--model A.onnx [B.onnx ...]] [--threads 2] [--seconds 5] [--rounds 1]

Several files are measured side by side: each round runs every file at each batch size in turn, so the speed
drift of a shared VM falls on all of them alike; the figure per file and batch is the median over rounds.
Prints a table and writes bench/results/classifier.json. Real committed faces are tiled to fill each batch.
Bounded: each measurement runs for ``--seconds`` after a short warm-up.
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

REPO = Path(__file__).resolve().parents[1]


def real_faces() -> list[np.ndarray]:
    import cv2

    return [face_from_crop(cv2.imread(str(p))) for p in sorted((REPO / "tests/data/faces").rglob("*.jpg"))]


def measure(session: ort.InferenceSession, batch: np.ndarray, seconds: float) -> dict[str, float]:
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: batch})
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, {name: batch})
        latencies.append(time.perf_counter() - start)
    return {
        "batch": len(batch),
        "runs": len(latencies),
        "faces_per_second": round(len(batch) * len(latencies) / sum(latencies), 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, nargs="+", default=[REPO / "service/deepfer/models/emotion.onnx"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/classifier.json")
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    sessions = [ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]) for path in args.model]
    faces = real_faces()
    batches = {size: to_batch([faces[i % len(faces)] for i in range(size)]) for size in (1, 64)}
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
            results.append({"batch": size, "faces_per_second": median, "rounds": rounds})
            print(f"{shown} ({version}) batch {size:>3}: {median:>9.1f} faces/s  (median of {len(rounds)} rounds)")
        records.append({"model": str(shown), "model_version": version, "results": results})
    record = {
        "models": records,
        "threads": args.threads,
        "seconds": args.seconds,
        "onnxruntime": ort.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
