"""``python -m training.average --run runs/NAME --last 1 3 5``: weight averaging over a run's last epochs.

Why: averaging the weights of the last few epochs of a decaying schedule (SWA, Izmailov et al. 2018) lands in
a flatter region than any single epoch, for no training cost; the run keeps every epoch's weights for it
(``--keep-epochs``). Each candidate is scored on the run's own validation split with the served framing
(centre crop, face and mirror averaged); the best is written as ``averaged.keras`` beside ``best.keras`` with
``average.json``, so ``python -m export --model runs/NAME/averaged.keras`` finds the run record as usual.
Batch-norm statistics are averaged with the weights: over a few epochs of a small learning rate they barely
move, and recomputing them would need a pass over the training faces per candidate.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainConfig
from training.data import FaceSet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.average", description=__doc__)
    parser.add_argument("--run", type=Path, required=True, help="run folder with epochs/NNN.weights.h5")
    parser.add_argument("--last", type=int, nargs="+", default=[1, 3, 5], help="numbers of final epochs to average")
    return parser.parse_args(argv)


def served_accuracy(model: Any, faces: FaceSet) -> float:
    """Accuracy of the face + mirror average, as the exported graph computes it."""
    x = faces.faces[..., np.newaxis].astype(np.float32)
    probabilities = model.predict(x, batch_size=256, verbose=0) + model.predict(
        x[:, :, ::-1], batch_size=256, verbose=0
    )
    return float(np.mean(probabilities.argmax(axis=1) == faces.labels))


def averaged_weights(model: Any, files: list[Path]) -> list[np.ndarray]:
    """The element-wise mean of the weight files (``model`` is only the vessel they are read through)."""
    total = None
    for path in files:
        model.load_weights(path)
        weights = model.get_weights()
        total = weights if total is None else [t + w for t, w in zip(total, weights, strict=True)]
    return [t / len(files) for t in total or []]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.model import load_network
    from training.train import load_data

    record = json.loads((args.run / "run.json").read_text())
    config = TrainConfig.load(args.run / "config.json")
    val = load_data(Path(record["data"]["path"]), config).val
    epochs = sorted((args.run / "epochs").glob("*.weights.h5"))
    if not epochs:
        raise SystemExit(f"{args.run}/epochs holds no weights: train with --keep-epochs")
    model = load_network(args.run / "best.keras")
    scores: dict[str, float] = {"best.keras": served_accuracy(model, val)}
    candidates: dict[str, list[np.ndarray]] = {"best.keras": model.get_weights()}
    for last in sorted({k for k in args.last if 0 < k <= len(epochs)}):
        name = f"last_{last}_epochs"
        candidates[name] = averaged_weights(model, epochs[-last:])
        model.set_weights(candidates[name])
        scores[name] = served_accuracy(model, val)
        print(f"{name}: validation {scores[name]:.4f}", flush=True)
    chosen = max(scores, key=scores.__getitem__)
    model.set_weights(candidates[chosen])
    model.save(args.run / "averaged.keras")
    summary = {"validation_accuracy": scores, "chosen": chosen, "epochs_available": len(epochs)}
    (args.run / "average.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
