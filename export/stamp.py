"""``python -m export.stamp --model emotion-int8.onnx --report reports/v5/int8 [--report reports/v5/validation]``.

Writes the evaluation figures of the file itself into its ``metrics`` metadata and its JSON record, so ``/model``
reports what ``training.evaluate`` measured on that very file (int8 and float32 differ), not the Keras
checkpoint's score from training. Only ``metadata_props`` change: the graph, and so every answer, is the one
the reports scored. Atomic, like every export.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import onnx

from deepfer.contract import MetadataKey
from export.files import atomic_write
from export.metadata import sha256_file
from training.graph import graph_sha256

REPORTED = ("accuracy", "macro_f1", "macro_auc", "ece_15_bins", "count")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export.stamp", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="exported ONNX file to stamp")
    parser.add_argument("--report", type=Path, action="append", required=True, help="training.evaluate --out folder")
    return parser.parse_args(argv)


def evaluation(report: Path, model_graph: onnx.GraphProto) -> tuple[str, dict[str, Any]]:
    """(split name, its headline figures) from a report folder, refusing a report of another graph."""
    figures = json.loads((report / "metrics.json").read_text())
    graph_digest = graph_sha256(model_graph)
    scored = figures.get("model", {}).get("graph_sha256")
    if scored is not None and scored != graph_digest:
        raise SystemExit(f"{report} scored another graph ({scored[:12]}…), not this file's ({graph_digest[:12]}…)")
    split = figures["data"]["split"]
    return split, {key: figures[key] for key in REPORTED if key in figures}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    proto = onnx.load(str(args.model))
    entries = {entry.key: entry for entry in proto.metadata_props}
    metrics = json.loads(entries[MetadataKey.METRICS].value) if MetadataKey.METRICS in entries else {}
    metrics["evaluation"] = dict(evaluation(report, proto.graph) for report in args.report)
    value = json.dumps(metrics, sort_keys=True)
    if MetadataKey.METRICS in entries:
        entries[MetadataKey.METRICS].value = value
    else:
        entry = proto.metadata_props.add()
        entry.key, entry.value = MetadataKey.METRICS, value
    atomic_write(proto.SerializeToString(), args.model)
    sidecar_path = args.model.with_suffix(".json")
    sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else {}
    sidecar.update(metrics=metrics, sha256=sha256_file(args.model))
    atomic_write((json.dumps(sidecar, indent=2) + "\n").encode(), sidecar_path)
    print(json.dumps(metrics["evaluation"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
