"""Tiny ONNX classifiers in the serving contract's layout (N x 48 x 48 x 1 float32 in, N x 7 probabilities out,
labels in the metadata), each built to keep or break one clause of it.

They stand in for the shipped model where a test needs a file that fails in one known way: at load
(``tests/http/test_faults.py``), at reload (``tests/http/test_reload.py``) or inside a run
(``tests/http/test_hostile.py``). IR version 8 / opset 13 so any onnxruntime this project supports can open them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import ArrayLike
from onnx import TensorProto, helper, numpy_helper

from deepfer.contract import LABELS, MetadataKey


def contract_model(
    name: str,
    nodes: list[onnx.NodeProto],
    constants: dict[str, ArrayLike],
    *,
    side: int = 48,
    labels: tuple[str, ...] | None = LABELS,
) -> onnx.ModelProto:
    """``nodes`` from input ``face`` (N x side x side x 1) to output ``probabilities`` (N x 7), with ``constants``
    as initializers and ``labels`` (if any) in the metadata."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("face", TensorProto.FLOAT, ["N", side, side, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(LABELS)])],
        initializer=[numpy_helper.from_array(np.asarray(value), key) for key, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if labels is not None:
        helper.set_model_props(model, {MetadataKey.LABELS: json.dumps(list(labels))})
    return model


def tiny_classifier(
    path: Path,
    *,
    side: int = 48,
    labels: tuple[str, ...] | None = LABELS,
    softmax: bool = True,
    diverged: bool = False,
    standardised: bool = False,
) -> Path:
    """A 2304 -> 7 linear model in the contract's layout, with one clause breakable per argument.

    ``diverged``: NaN weights, as a training run that diverged exports them (every output NaN). ``standardised``:
    each face scaled to zero mean and unit spread first, so a blank face divides 0 by 0 (NaN for it alone).
    """
    weights = np.random.default_rng(0).normal(0.0, 0.01, (side * side, len(LABELS))).astype(np.float32)
    if diverged:
        weights[:] = np.nan
    nodes = []
    if standardised:
        axes = [1, 2, 3]
        nodes += [
            helper.make_node("ReduceMean", ["face"], ["mean"], axes=axes),
            helper.make_node("Sub", ["face", "mean"], ["centred"]),
            helper.make_node("Mul", ["centred", "centred"], ["squared"]),
            helper.make_node("ReduceMean", ["squared"], ["variance"], axes=axes),
            helper.make_node("Sqrt", ["variance"], ["spread"]),
            helper.make_node("Div", ["centred", "spread"], ["scaled"]),
        ]
    nodes += [
        helper.make_node("Flatten", ["scaled" if standardised else "face"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weights"], ["logits" if softmax else "probabilities"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    model = contract_model("tiny_emotion", nodes, {"weights": weights}, side=side, labels=labels)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def classifier_failing_on_white(path: Path) -> Path:
    """A contract-keeping 2304 -> 7 softmax model whose run raises onnxruntime's InvalidArgument (a Gather out of
    range) when every pixel of the batch is 255, and answers normally otherwise (the load probe and warm-up)."""
    weights = np.random.default_rng(0).normal(0.0, 0.01, (48 * 48, len(LABELS))).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMin", ["face"], ["darkest"], keepdims=0),
        helper.make_node("Equal", ["darkest", "white"], ["all_white"]),
        helper.make_node("Cast", ["all_white"], ["flag"], to=TensorProto.INT64),
        helper.make_node("Mul", ["flag", "far"], ["index"]),
        helper.make_node("Gather", ["one", "index"], ["scale"]),  # index 1000 of a 1-element tensor: raises
        helper.make_node("Flatten", ["face"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["softmax"], axis=1),
        helper.make_node("Mul", ["softmax", "scale"], ["probabilities"]),
    ]
    constants = {"weights": weights, "white": np.float32(255), "far": np.int64(1000), "one": np.ones(1, np.float32)}
    onnx.save(contract_model("failing_on_white", nodes, constants), path)
    return path
