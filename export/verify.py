"""The exported bytes as any consumer will meet them: a fresh ONNX Runtime session, the contract checked."""

from __future__ import annotations

import numpy as np


def onnx_answers(onnx_bytes: bytes, faces: np.ndarray) -> np.ndarray:
    """Load the bytes in a fresh InferenceSession, as any consumer would, check the contract, and classify."""
    import onnxruntime as ort

    from deepfer.contract import check_contract

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    check_contract(session)
    answers: np.ndarray = session.run(None, {session.get_inputs()[0].name: faces})[0]
    return answers
