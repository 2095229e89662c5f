"""``python -m export --model runs/NAME/best.keras --out service/models/emotion.onnx``.

Convert -> attach metadata -> verify in a fresh ONNX Runtime session against Keras -> atomic write. The file at
``--out`` is either the previous model or the complete new one, never something in between: the service may
be loading it at any moment.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from export.metadata import build_metadata, run_record, sha256_file

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
        default=None,
        help="Gaussian smoothing of the face in the graph (default export.smoothing.SMOOTHING_SIGMA; 0 = none)",
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
        help="temperature.json from python -m training.calibrate: its temperature goes into the graph",
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        default=None,
        help="JSON of metrics to embed (default: the run's own metrics from run.json)",
    )
    return parser.parse_args(argv)


@contextmanager
def replacing(destination: Path) -> Iterator[Path]:
    """A temporary path beside ``destination`` that is renamed over it only when the block succeeds.

    Same folder, so the rename is atomic; same suffix, so writers that check extensions (Keras) accept it.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.stem}.", suffix=destination.suffix
    )
    os.close(handle)
    # mkstemp makes the file private (0600); a model must stay readable by the service's own user (the
    # container runs as uid 10001), so give it the permissions a plain open() would have.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    try:
        yield Path(temporary)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write(data: bytes, destination: Path) -> None:
    """Write, fsync, then rename over the destination: readers see the old file or the whole new one."""
    with replacing(destination) as temporary, temporary.open("wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def record_faces(record: dict[str, Any], split: str, per_class: int) -> np.ndarray:
    """Real faces from the run's own data as N x 48 x 48 x 1 float32: ``test`` for the parity check,
    ``train`` (never ``test``) for int8 calibration.

    Falls back to uniform noise over 0..255 only for a parity check of a model whose training data is not
    reachable (a file made elsewhere), so the contract's value range is still exercised.
    """
    recorded = record.get("data", {}).get("path")
    data = Path(recorded) if recorded else None
    if data is not None and data.exists():
        from training.data import load_split

        return load_split(data, split, per_class).faces[..., np.newaxis].astype(np.float32)
    if split == "train":
        where = recorded or "the run record has no data path"
        raise SystemExit(f"export: --int8 needs the training data for calibration; not reachable: {where}")
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, size=(64, 48, 48, 1)).astype(np.float32)


def onnx_answers(onnx_bytes: bytes, faces: np.ndarray) -> np.ndarray:
    """Load the bytes in a fresh InferenceSession, as any consumer would, check the contract, and classify."""
    import onnxruntime as ort

    from deepfer.contract import check_contract

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    check_contract(session)
    answers: np.ndarray = session.run(None, {session.get_inputs()[0].name: faces})[0]
    return answers


def parity(answers: np.ndarray, classify: Any, faces: np.ndarray) -> float:
    """max |Keras - ONNX| over the faces, the Keras side being the same computation run eagerly in TensorFlow."""
    return float(np.max(np.abs(answers - classify(faces).numpy())))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from export.convert import float32_copy, served_function, to_onnx
    from export.smoothing import SMOOTHING_SIGMA
    from training.model import load_network

    # Parity is checked against this float32 copy: a mixed_bfloat16 checkpoint's own outputs differ from any
    # float32 graph by bf16 rounding (~1e-2), which would hide a real conversion error below it.
    # Uncompiled: clone_model recompiles a compiled model, and its optimizer's slots would then be saved into
    # the Keras copy, doubling the file for nothing (fine-tuning builds its own optimizer).
    model = float32_copy(load_network(args.model, compile=False))
    tta = not args.no_tta
    sigma = SMOOTHING_SIGMA if args.smoothing_sigma is None else args.smoothing_sigma
    temperature = json.loads(args.calibration.read_text())["temperature"] if args.calibration else 1.0
    classify = served_function(model, smoothing_sigma=sigma, test_time_augmentation=tta, temperature=temperature)
    proto = to_onnx(classify)
    record = run_record(args.model)
    metrics = json.loads(args.metrics.read_text()) if args.metrics else None
    version = args.version or args.model.resolve().parent.name
    metadata = build_metadata(
        record,
        name=args.name,
        version=version,
        test_time_augmentation=tta,
        smoothing_sigma=sigma,
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
        raise SystemExit(f"export: ONNX and Keras disagree by {difference:.2e} (> {PARITY_TOLERANCE}); not written")

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


def write_model(onnx_bytes: bytes, path: Path, metadata: dict[str, str], **extra: object) -> None:
    """The ONNX file and its JSON record beside it (metadata, SHA-256, how it was made), each written atomically."""
    atomic_write(onnx_bytes, path)
    sidecar = {**{k: _maybe_json(v) for k, v in metadata.items()}, "sha256": sha256_file(path), **extra}
    atomic_write((json.dumps(sidecar, indent=2) + "\n").encode(), path.with_suffix(".json"))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


def save_keras_copy(model: Any, destination: Path) -> Path:
    """The float32 network beside the ONNX file, without optimizer state: the start point for ``--init``
    fine-tuning on a customer's own faces, kept in step with the ONNX file it was exported to."""
    with replacing(destination) as temporary:
        model.save(temporary)
    return destination


def _maybe_json(value: str) -> object:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


if __name__ == "__main__":
    raise SystemExit(main())
