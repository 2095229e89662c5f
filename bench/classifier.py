"""Classifier throughput: faces/s of the shipped ONNX file at batch 1 and 64 with ONNX Runtime.

    python -m bench.classifier [--model service/models/emotion.onnx] [--threads 2] [--seconds 5]

Prints a table and writes bench/results/classifier.json. Real committed faces are tiled to fill each batch.
Bounded: each batch size runs for ``--seconds`` after a short warm-up.
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

from deepfer.preprocess import face_from_crop, to_batch

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
    parser.add_argument("--model", type=Path, default=REPO / "service/models/emotion.onnx")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/classifier.json")
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    faces = real_faces()
    results = []
    for size in (1, 64):
        batch = to_batch([faces[i % len(faces)] for i in range(size)])
        results.append(measure(session, batch, args.seconds))
        print(
            f"batch {size:>3}: {results[-1]['faces_per_second']:>9.1f} faces/s  "
            f"p50 {results[-1]['p50_ms']:.2f} ms  p99 {results[-1]['p99_ms']:.2f} ms"
        )
    record = {
        "model": str(args.model.relative_to(REPO) if args.model.is_relative_to(REPO) else args.model),
        "model_version": session.get_modelmeta().custom_metadata_map.get("version", "unknown"),
        "threads": args.threads,
        "onnxruntime": ort.__version__,
        "machine": platform.processor() or platform.machine(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
