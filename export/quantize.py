"""Static int8 quantisation of the exported classifier (QDQ, per-channel weights) with ONNX Runtime's tools.

Why: in float32 the classifier was about half of the service's CPU per image, and CPUs with VNNI/AMX run int8
convolutions about 3x cheaper (``python -m bench.classifier``, docs/performance.md: 3.1x on the 2026-11-24 Xeon,
2.8-3.0x less CPU per face on 2026-12-03's EPYC) while PublicTest accuracy stays within 0.1 point (m4: 68.7% against
68.8%, docs/model.md). Calibration uses training faces only, never the test split. The result keeps the float32
input/output contract: quantise/dequantise nodes sit inside the graph.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

CALIBRATION_BATCH = 32


class _Faces(CalibrationDataReader):
    """Feeds N x 48 x 48 x 1 float32 calibration batches to ONNX Runtime's range collector."""

    def __init__(self, input_name: str, faces: NDArray[np.float32]) -> None:
        self._batches: Iterator[dict[str, NDArray[np.float32]]] = iter(
            {input_name: faces[start : start + CALIBRATION_BATCH]} for start in range(0, len(faces), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, NDArray[np.float32]] | None:
        return next(self._batches, None)


def quantize_int8(proto: onnx.ModelProto, calibration_faces: NDArray[np.float32]) -> onnx.ModelProto:
    """float32 classifier -> int8 QDQ classifier with the same inputs, outputs and metadata_props."""
    with tempfile.TemporaryDirectory(prefix="deepfer-int8-") as folder:
        source, prepared, quantised = (Path(folder) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(proto, source)
        # Symbolic shape inference needs sympy, which nothing else uses; the graph's shapes are static anyway.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantised),
            _Faces(proto.graph.input[0].name, calibration_faces),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # The convolutions and matrix products, where the time goes, and the ReLUs and max-pools between
            # them, which then run on uint8 instead of inside a dequantise/quantise pair each (that pair was 11%
            # of the classifier's CPU; validation and PublicTest accuracy unchanged). Not the softmax and the
            # flip average: quantised, they put the output rows' sums ~3e-3 off 1, breaking the contract.
            op_types_to_quantize=["Conv", "MatMul", "Gemm", "Relu", "MaxPool"],
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # 7-bit weights: x86 CPUs without AVX-512 VNNI multiply uint8 x int8 pairs with a saturating 16-bit
            # add (VPMADDUBSW), which full-range weights overflow. On the AVX2-only VM of 2026-12-01 the full-range
            # v3.1 file lost 1.5 points against float32 (validation 66.9 vs 68.4%, PublicTest 65.3 vs 66.8%).
            reduce_range=True,
        )
        result = onnx.load(quantised)
    del result.metadata_props[:]
    result.metadata_props.extend(proto.metadata_props)
    return result
