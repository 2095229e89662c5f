"""Validation accuracy by the strength of the test-time smoothing: the calibration behind
``export.smoothing.SMOOTHING_SIGMA``.

    python -m export --model ~/.cache/deepfer/runs/m4/best.keras --out /tmp/m4-raw.onnx --smoothing-sigma 0
    python -m bench.smoothing_sweep --model /tmp/m4-raw.onnx --data ../shared/data/fer2013.zip

The model must be exported without smoothing (its metadata says so); this script then smooths the validation
faces (the part of ``train/`` its training held out, rebuilt from the model's metadata as ``training.evaluate
--split validation`` does) with ``export.smoothing.smooth``, the OpenCV twin of the exported graph's smoothing,
once per sigma. PublicTest is never read.
Printed and saved as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.local_service import REPO
from deepfer.contract import MetadataKey
from deepfer.engine.align import to_batch
from deepfer.engine.classifier import EmotionClassifier
from export.smoothing import smooth
from training.data import sha256_of, split_errors_exit, validation_faces

RESULTS = REPO / "bench" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="ONNX classifier exported with --smoothing-sigma 0")
    parser.add_argument("--data", type=Path, required=True, help="FER2013 zip or folder (its train/ split)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0, 0.4, 0.5, 0.6, 0.7, 0.8])
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default: bench/results/smoothing_sweep-TIME.json)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    classifier = EmotionClassifier(args.model, intra_op_threads=0)
    if (smoothing := classifier.model.metadata.get(MetadataKey.SMOOTHING, "none")) != "none":
        raise SystemExit(f"{args.model} smooths in its graph ({smoothing}): export it without --smoothing-sigma")
    held, _ = validation_faces(args.model, args.data, classifier.model.metadata, sha256_of(args.data))
    faces = to_batch(held.faces)
    rows = []
    print(f"{args.model.name} on {len(held)} validation faces")
    for sigma in args.sigmas:
        predicted = classifier.run_in_batches(smooth(faces, sigma)).argmax(axis=1)
        rows.append({"sigma": sigma, "accuracy": float(np.mean(predicted == held.labels))})
        print(f"sigma {sigma:<4g} accuracy {rows[-1]['accuracy']:.2%}")
    out = args.out or RESULTS / f"smoothing_sweep-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": str(args.model), "faces": len(held), "rows": rows}, indent=2) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    with split_errors_exit():
        raise SystemExit(main())
