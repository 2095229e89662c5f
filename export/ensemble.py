"""``python -m export.ensemble --member A.onnx B.onnx C.onnx --data fer2013.zip --out emotion-ensemble.onnx``.

Members -> one graph (the members side by side on the one shared input, their probabilities averaged) -> one
temperature fitted on the members' shared validation split -> the temperature into the graph -> checked against
the members run one by one -> atomic write (and ``--int8``, a quantised copy). The result honours the same
contract as any single file, so the service loads it as it loads one network.

Why average probabilities: FER2013 ensembles of equally strong members gain 1.4-2.7 points over their members
(docs/model.md), and the mean of calibrated members needs only one temperature after it, fitted where the
ensemble is chosen (validation), never on PublicTest. Members are exported ONNX files, not Keras checkpoints: any
member (v3.2, the default before m4; a run trained under JAX on the GPU path) composes without TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import compose, helper

from deepfer.contract import LABELS, MetadataKey
from export.faces import ExportError
from export.files import write_model
from export.verify import onnx_answers
from training.calibration import OBJECTIVES, apply_temperature, fit_temperature
from training.data import load_split, sha256_of, split_errors_exit, validation_faces

INPUT_NAME = "face"
OUTPUT_NAME = "probabilities"
# The composed graph against the members' own answers, averaged and tempered in numpy: float32 rounding only.
COMPOSITION_TOLERANCE = 1e-5
# Keys of a member's training_config that decide its validation split: members must agree on every one.
SPLIT_KEYS = ("split_seed", "val_fraction", "limit_per_class")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export.ensemble", description=__doc__)
    parser.add_argument("--member", type=Path, nargs="+", required=True, help="float32 member ONNX files (2 or more)")
    parser.add_argument("--data", type=Path, required=True, help="the FER2013 zip or folder the members trained on")
    parser.add_argument("--out", type=Path, required=True, help="destination .onnx file")
    parser.add_argument("--int8", type=Path, default=None, help="also write an int8-quantised copy here")
    parser.add_argument("--name", default="deepfer-emotion-ensemble", help="model name in the metadata")
    parser.add_argument("--version", required=True, help="version string, e.g. e1")
    parser.add_argument(
        "--calibrate-for", choices=OBJECTIVES, default="ece", help="what the temperature minimises on validation"
    )
    return parser.parse_args(argv)


def member_summary(proto: onnx.ModelProto, path: Path) -> dict[str, Any]:
    """What the ensemble's metadata keeps of a member: who it is, how it was trained, how it scored."""
    metadata = {entry.key: entry.value for entry in proto.metadata_props}

    def parsed(key: str) -> Any:
        try:
            return json.loads(metadata.get(key, "{}"))
        except json.JSONDecodeError:
            return {}

    return {
        "file": path.name,
        "version": metadata.get(MetadataKey.VERSION, "unknown"),
        "command": metadata.get(MetadataKey.COMMAND, "unknown"),
        "config": parsed(MetadataKey.CONFIG),
        "epochs_trained": metadata.get(MetadataKey.EPOCHS, "unknown"),
        "data_sha256": metadata.get(MetadataKey.DATA_SHA256, "unknown"),
        "temperature": metadata.get(MetadataKey.TEMPERATURE, "1"),
        "test_time": {k: metadata.get(k, "none") for k in (MetadataKey.TTA, MetadataKey.SMOOTHING, MetadataKey.CROP)},
        "metrics": parsed(MetadataKey.METRICS),
    }


def shared_split(members: list[dict[str, Any]]) -> dict[str, Any]:
    """The validation split every member held out, or ``ExportError`` when they did not hold out the same one.

    A face one member trained on must not sit in the split the ensemble is calibrated and judged on.
    """
    splits = []
    for member in members:
        config = member["config"]
        split = {key: config.get(key, config.get("seed") if key == "split_seed" else None) for key in SPLIT_KEYS}
        splits.append({"data_sha256": member["data_sha256"], **split})
    if any(split != splits[0] for split in splits) or splits[0]["split_seed"] is None:
        listed = "; ".join(f"{m['file']}: {s}" for m, s in zip(members, splits, strict=True))
        raise ExportError(f"members do not share one recorded validation split: {listed}")
    return splits[0]


def averaged_graph(protos: list[onnx.ModelProto], temperature: float) -> onnx.ModelProto:
    """One graph: every member fed the shared input, the mean of their probabilities, then the temperature.

    Each member's names are prefixed (``m0_``...) so their nodes and weights cannot collide; the temperature is
    softmax(log p / T), as ``training.calibration`` fits it.
    """
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    outputs = []
    for index, member in enumerate(protos):
        prefixed = compose.add_prefix(member, f"m{index}_")
        graph = prefixed.graph
        nodes.append(helper.make_node("Identity", [INPUT_NAME], [graph.input[0].name]))
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        outputs.append(graph.output[0].name)
    scale = helper.make_tensor("ensemble_scale", onnx.TensorProto.FLOAT, [], [1.0 / len(protos)])
    floor = helper.make_tensor("ensemble_floor", onnx.TensorProto.FLOAT, [], [1e-12])
    inverse_t = helper.make_tensor("ensemble_inverse_temperature", onnx.TensorProto.FLOAT, [], [1.0 / temperature])
    initializers += [scale, floor, inverse_t]
    nodes += [
        helper.make_node("Sum", outputs, ["ensemble_sum"]),
        helper.make_node("Mul", ["ensemble_sum", "ensemble_scale"], ["ensemble_mean"]),
        helper.make_node("Max", ["ensemble_mean", "ensemble_floor"], ["ensemble_floored"]),
        helper.make_node("Log", ["ensemble_floored"], ["ensemble_log"]),
        helper.make_node("Mul", ["ensemble_log", "ensemble_inverse_temperature"], ["ensemble_logits"]),
        helper.make_node("Softmax", ["ensemble_logits"], [OUTPUT_NAME], axis=-1),
    ]
    face = helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, ["N", 48, 48, 1])
    probabilities = helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["N", len(LABELS)])
    graph = helper.make_graph(nodes, "deepfer_ensemble", [face], [probabilities], initializers)
    opsets = {}
    for member in protos:
        for opset in member.opset_import:
            opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = max(member.ir_version for member in protos)
    model.producer_name = "deepfer-export"
    onnx.checker.check_model(model)
    return model


def member_accuracies(members: list[dict[str, Any]], answers: list[np.ndarray], labels: np.ndarray) -> dict[str, float]:
    """Each member's accuracy, keyed by its place and file: two members may share a file name (emotion.onnx)."""
    return {
        f"member {index}: {member['file']}": float(np.mean(answer.argmax(axis=1) == labels))
        for index, (member, answer) in enumerate(zip(members, answers, strict=True))
    }


def ensemble_metadata(
    members: list[dict[str, Any]],
    split: dict[str, Any],
    temperature: float,
    *,
    name: str,
    version: str,
    calibrated_for: str,
) -> dict[str, str]:
    """``metadata_props`` in ``MetadataKey`` names; ``training_config`` records the split for evaluation tools."""
    config = {
        "ensemble": "mean of the members' probabilities, then one temperature",
        "temperature_minimises": calibrated_for,
        "seed": split["split_seed"],
        **{key: split[key] for key in SPLIT_KEYS},
    }
    command = shlex.join(["python", "-m", "export.ensemble", *sys.argv[1:]])
    return {
        MetadataKey.LABELS: json.dumps(list(LABELS)),
        MetadataKey.NAME: name,
        MetadataKey.VERSION: version,
        MetadataKey.DATA_SHA256: split["data_sha256"],
        MetadataKey.COMMAND: command,
        MetadataKey.SEED: str(split["split_seed"]),
        MetadataKey.CONFIG: json.dumps(config, sort_keys=True),
        MetadataKey.METRICS: json.dumps({}),
        MetadataKey.TTA: "per member",
        MetadataKey.SMOOTHING: "per member",
        MetadataKey.CROP: "per member",
        MetadataKey.TEMPERATURE: f"{temperature:.6g}",
        MetadataKey.EPOCHS: "per member",
        MetadataKey.MEMBERS: json.dumps(members, sort_keys=True),
    }


def with_metadata(proto: onnx.ModelProto, metadata: dict[str, str]) -> onnx.ModelProto:
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if len(args.member) < 2:
        raise ExportError("an ensemble needs at least two --member files")
    protos = [onnx.load(str(path)) for path in args.member]
    members = [member_summary(proto, path) for proto, path in zip(protos, args.member, strict=True)]
    split = shared_split(members)
    data_sha256 = sha256_of(args.data)
    untempered = ensemble_metadata(
        members, split, 1.0, name=args.name, version=args.version, calibrated_for=args.calibrate_for
    )
    faces, _ = validation_faces(args.out, args.data, untempered, data_sha256)
    batch = faces.faces[..., np.newaxis].astype(np.float32)

    member_answers = [onnx_answers(proto.SerializeToString(), batch) for proto in protos]
    mean = np.mean(member_answers, axis=0)
    temperature = fit_temperature(faces.labels, mean, args.calibrate_for)
    metadata = ensemble_metadata(
        members, split, temperature, name=args.name, version=args.version, calibrated_for=args.calibrate_for
    )
    proto = with_metadata(averaged_graph(protos, temperature), metadata)
    onnx_bytes = proto.SerializeToString()
    answers = onnx_answers(onnx_bytes, batch)
    difference = float(np.max(np.abs(answers - apply_temperature(mean, temperature))))
    if difference > COMPOSITION_TOLERANCE:
        raise ExportError(f"the composed graph differs from its members by {difference:.2e}; not written")
    accuracy = {"ensemble": float(np.mean(answers.argmax(axis=1) == faces.labels))}
    accuracy.update(member_accuracies(members, member_answers, faces.labels))
    print(json.dumps({"validation_accuracy": accuracy, "temperature": temperature, "faces": len(faces)}))
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    extra = {"validation_accuracy_at_export": accuracy, "composition_max_abs_diff": difference}
    write_model(onnx_bytes, args.out, metadata, **extra)
    if args.int8:
        from export.quantize import quantize_int8

        calibration = load_split(args.data, "train", 60).faces[..., np.newaxis].astype(np.float32)
        int8_bytes = quantize_int8(proto, calibration).SerializeToString()
        int8_answers = onnx_answers(int8_bytes, batch)
        agreement = float(np.mean(int8_answers.argmax(axis=1) == answers.argmax(axis=1)))
        write_model(
            int8_bytes,
            args.int8,
            metadata,
            quantization="int8 static QDQ, per-channel weights, calibrated on 60 training faces per class",
            argmax_agreement_with_float32=agreement,
            validation_accuracy_at_export={"ensemble": float(np.mean(int8_answers.argmax(axis=1) == faces.labels))},
        )
    return 0


if __name__ == "__main__":
    with split_errors_exit():
        try:
            raise SystemExit(main())
        except ExportError as error:
            raise SystemExit(f"export.ensemble: {error}") from None
