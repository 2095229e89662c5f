"""``python -m training.fit_temperature --model emotion.onnx --data fer2013.zip --out reports/NAME/calibration``.

Fits the temperature on the model's own validation split (rebuilt from its metadata, never PublicTest), and
writes ``temperature.json`` (what ``python -m export --calibration`` reads to put it into the graph), the
reliability diagram before and after, and ECE / NLL / accuracy-against-coverage for both.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepfer.contract import MetadataKey
from deepfer.engine.align import to_batch
from deepfer.engine.classifier import EmotionClassifier
from training.calibration import (
    ECE_BINS,
    OBJECTIVES,
    accuracy_at_coverage,
    apply_temperature,
    fit_temperature,
    reliability,
)
from training.calibration import negative_log_likelihood as nll
from training.data import sha256_of, split_errors_exit, validation_faces
from training.report import plot_reliability


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.fit_temperature", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="ONNX classifier exported without a temperature")
    parser.add_argument("--data", type=Path, required=True, help="the FER2013 folder or zip it was trained on")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--calibrate-for", choices=OBJECTIVES, default="ece", help="what the temperature minimises on validation"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    classifier = EmotionClassifier(args.model, intra_op_threads=0)
    metadata = classifier.model.metadata
    if metadata.get(MetadataKey.TEMPERATURE, "1") != "1":
        raise SystemExit(
            f"{args.model} already holds temperature {metadata[MetadataKey.TEMPERATURE]}: fit on a raw export"
        )
    faces, chosen_by = validation_faces(args.model, args.data, metadata, sha256_of(args.data))
    before = classifier.run_in_batches(to_batch(faces.faces), args.batch_size)
    temperature = fit_temperature(faces.labels, before, args.calibrate_for)
    after = apply_temperature(before, temperature)
    curves = {
        "before": reliability(faces.labels, before),
        f"after (T={temperature:.3f})": reliability(faces.labels, after),
    }
    result = {
        "temperature": temperature,
        "minimises": args.calibrate_for,
        "fitted_on": {"split": "validation", "faces": len(faces), **chosen_by},
        "model": {"path": str(args.model), "sha256": classifier.model.sha256},
        f"ece_{ECE_BINS}_bins": {name.split(" ")[0]: c.expected_calibration_error for name, c in curves.items()},
        "nll": {"before": nll(faces.labels, before), "after": nll(faces.labels, after)},
        "accuracy_at_coverage": {
            "before": accuracy_at_coverage(faces.labels, before),
            "after": accuracy_at_coverage(faces.labels, after),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    plot_reliability(curves, args.out / "reliability_validation.png")
    (args.out / "temperature.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("temperature", f"ece_{ECE_BINS}_bins", "nll")}))
    return 0


if __name__ == "__main__":
    with split_errors_exit():
        raise SystemExit(main())
