"""The identity of an ONNX file's computation: what evaluation records and ``export.stamp`` checks a report against.

Here, below both, so evaluation does not reach into the export step (and stamping stays light: hashlib and onnx).
"""

from __future__ import annotations

import hashlib

import onnx


def graph_sha256(graph: onnx.GraphProto) -> str:
    """The computation alone: unchanged by stamping, which rewrites only the metadata and so the file's hash."""
    return hashlib.sha256(graph.SerializeToString(deterministic=True)).hexdigest()
