"""``python -m export --model runs/NAME/best.keras --out service/deepfer/models/emotion.onnx``.

Convert -> attach metadata -> verify in a fresh ONNX Runtime session against Keras (on faces from ``faces``) ->
atomic write (``files``): the file at ``--out`` is the previous model or the complete new one, never in between.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from export.faces import ExportError, on_local_data, record_faces
from export.files import save_keras_copy, write_model
from export.metadata import build_metadata, run_record
from export.smoothing import SMOOTHING_SIGMA
from export.verify import onnx_answers

PARITY_TOLERANCE = 1e-4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="trained .keras model")
    parser.add_argument("--out", type=Path, required=True, help="destination .onnx file")
    parser.add_argument("--name", default="deepfer-emotion", help="model name in the metadata")
    parser.add_argument("--version", default=None, help="version string (default: the run folder's name)")
    parser.add_argument("--no-tta", action="store_true", help="do not average the mirrored face in the graph")
    parser.add_argument(
        "--smoothing-sigma",
        type=float,
        default=SMOOTHING_SIGMA,
        help="sigma of a 3x3 Gaussian smoothing of the face in the graph (default %(default)g: none, as for m4; "
        "0.6 reproduces v3.1-v3.2; why: export/smoothing.py)",
    )
    parser.add_argument(
        "--int8",
        type=Path,
        default=None,
        help="also write an int8-quantised copy here (static QDQ, calibrated on training faces)",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="temperature.json from python -m training.fit_temperature: its temperature goes into the graph",
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        default=None,
        help="JSON of metrics to embed (default: the run's own metrics from run.json)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="the run's data on this machine, for a run trained elsewhere (the GPU path); default: run.json's",
    )
    return parser.parse_args(argv)


def parity(answers: np.ndarray, classify: Any, faces: np.ndarray) -> float:
    """max |Keras - ONNX| over the faces, the Keras side being the same computation run eagerly in TensorFlow."""
    return float(np.max(np.abs(answers - classify(faces).numpy())))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from export.convert import float32_copy, served_function, to_onnx
    from training.model import load_network

    # Parity is checked against this float32 copy: a mixed_bfloat16 checkpoint's own outputs differ from any
    # float32 graph by bf16 rounding (~1e-2), which would hide a real conversion error below it.
    # Uncompiled: clone_model recompiles a compiled model, and its optimizer's slots would then be saved into
    # the Keras copy, doubling the file for nothing (fine-tuning builds its own optimizer).
    model = float32_copy(load_network(args.model))
    tta = not args.no_tta
    temperature = json.loads(args.calibration.read_text())["temperature"] if args.calibration else 1.0
    classify = served_function(
        model, smoothing_sigma=args.smoothing_sigma, test_time_augmentation=tta, temperature=temperature
    )
    proto = to_onnx(classify)
    record = run_record(args.model)
    if args.data is not None:
        record = on_local_data(record, args.model, args.data)
    metrics = json.loads(args.metrics.read_text()) if args.metrics else None
    version = args.version or args.model.resolve().parent.name
    metadata = build_metadata(
        record,
        name=args.name,
        version=version,
        test_time_augmentation=tta,
        smoothing_sigma=args.smoothing_sigma,
        temperature=temperature,
        metrics=metrics,
    )
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "deepfer-export"
    onnx_bytes = proto.SerializeToString()

    faces = record_faces(record, "test", per_class=10)
    float32_answers = onnx_answers(onnx_bytes, faces)
    difference = parity(float32_answers, classify, faces)
    if difference > PARITY_TOLERANCE:
        raise ExportError(f"ONNX and Keras disagree by {difference:.2e} (> {PARITY_TOLERANCE}); not written")

    keras_copy = save_keras_copy(model, args.out.with_suffix(".keras"))
    write_model(
        onnx_bytes,
        args.out,
        metadata,
        source_model=str(args.model),
        keras_model=keras_copy.name,
        parity_max_abs_diff=difference,
    )
    if args.int8:
        from export.quantize import quantize_int8

        int8_bytes = quantize_int8(proto, record_faces(record, "train", per_class=60)).SerializeToString()
        int8_picks = onnx_answers(int8_bytes, faces).argmax(axis=1)
        agreement = float(np.mean(int8_picks == float32_answers.argmax(axis=1)))
        write_model(
            int8_bytes,
            args.int8,
            metadata,
            source_model=str(args.model),
            quantization="int8 static QDQ, per-channel weights, calibrated on 60 training faces per class",
            argmax_agreement_with_float32=agreement,
        )
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except ExportError as error:
        raise SystemExit(f"export: {error}") from None
