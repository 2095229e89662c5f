"""``python -m training.evaluate --model service/deepfer/models/emotion.onnx --data fer2013.zip --out reports/NAME``.

Scores the ONNX file (the artefact that ships, not the Keras checkpoint) through the service's own classifier
wrapper, on faces prepared by the service's own preprocessing, and writes the report folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray

from deepfer.engine.align import to_batch
from deepfer.engine.classifier import EmotionClassifier
from training.conditions import CONDITIONS, apply_condition
from training.data import FaceSet, load_split, sha256_of, split_errors_exit, validation_faces
from training.graph import graph_sha256
from training.report import per_class_table, score, write_report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="ONNX classifier honouring the contract")
    parser.add_argument("--data", type=Path, required=True, help="Kaggle-layout FER2013 folder or zip")
    parser.add_argument(
        "--split",
        choices=("test", "train", "validation"),
        default="test",
        help="test (PublicTest, the default), train, or validation: the part of train/ that training held out, "
        "rebuilt from the seed and fraction in the model's metadata (choose models on this one, never on test)",
    )
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--history", type=Path, default=None, help="the run's history.csv, for training curves")
    parser.add_argument("--limit-per-class", type=int, default=None, help="score at most N faces per class")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = all cores)")
    parser.add_argument(
        "--conditions",
        action="store_true",
        help="also score a copy of the split under each camera condition of training.conditions "
        "(noise, JPEG, blur, dim light, low contrast, tilt, occlusion): conditions.json and conditions.md",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    classifier = EmotionClassifier(args.model, intra_op_threads=args.threads)
    data_sha256 = sha256_of(args.data)
    faces, chosen_by = load_faces(args, classifier.model.metadata, data_sha256)
    started = time.perf_counter()
    probabilities = classifier.run_in_batches(to_batch(faces.faces), args.batch_size)
    seconds = time.perf_counter() - started
    extra = {
        "model": {
            "path": str(args.model),
            "version": classifier.model.version,
            "sha256": classifier.model.sha256,
            "graph_sha256": graph_sha256(onnx.load(str(args.model)).graph),
        },
        "data": {
            "path": str(args.data),
            "split": args.split,
            **chosen_by,
            "sha256": data_sha256,
        },
        "faces_per_second": round(len(faces) / seconds, 1),
    }
    report = write_report(args.out, faces.labels, probabilities, extra, args.history)
    print(per_class_table(report))
    if args.conditions:
        print(score_conditions(classifier, faces, report, args))
    print(json.dumps({"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "out": str(args.out)}))
    return 0


def score_conditions(classifier: EmotionClassifier, faces: FaceSet, clean: dict, args: argparse.Namespace) -> str:
    """Accuracy and macro F1 under each condition against the clean split; writes JSON and a Markdown table."""
    rows = {"clean": {"accuracy": clean["accuracy"], "macro_f1": clean["macro_f1"], "drop_points": 0.0}}
    for name in CONDITIONS:
        degraded = apply_condition(name, faces.faces)
        scores = score(faces.labels, classifier.run_in_batches(to_batch(degraded), args.batch_size))
        drop = 100 * (clean["accuracy"] - scores["accuracy"])
        rows[name] = {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "drop_points": drop}
    (args.out / "conditions.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| condition | accuracy | macro F1 | cost (points) |", "|---|---|---|---|"]
    lines += [f"| {n} | {r['accuracy']:.1%} | {r['macro_f1']:.3f} | {r['drop_points']:.1f} |" for n, r in rows.items()]
    table = "\n".join(lines)
    (args.out / "conditions.md").write_text(table + "\n")
    return table


def load_faces(
    args: argparse.Namespace, metadata: dict[str, str], data_sha256: str
) -> tuple[FaceSet, dict[str, object]]:
    """The faces to score, and for ``validation`` the parameters that chose them (they go into the report)."""
    if args.split != "validation":
        return load_split(args.data, args.split, args.limit_per_class), {}
    faces, chosen_by = validation_faces(args.model, args.data, metadata, data_sha256)
    if args.limit_per_class is not None:
        faces = faces.subset(first_per_class(faces.labels, args.limit_per_class))
    return faces, chosen_by


def first_per_class(labels: NDArray[np.int64], limit: int) -> NDArray[np.int64]:
    """Indices of at most ``limit`` faces of each class, in their original order."""
    return np.sort(np.concatenate([np.flatnonzero(labels == cls)[:limit] for cls in np.unique(labels)]))


if __name__ == "__main__":
    with split_errors_exit():
        raise SystemExit(main())
