"""``python -m training.train --data fer2013.zip --out runs/NAME``: train the emotion classifier (m4's recipe).

Setup -> data -> model -> fit -> record. Re-running the same command with the same ``--out`` resumes from the
last completed epoch (Keras ``BackupAndRestore``), so a long schedule can span several sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any, get_args

import numpy as np

from deepfer.contract import LABELS
from training.batches import FaceBatches
from training.config import ClassWeighting, Schedule, TrainConfig
from training.data import FaceSet, has_split, load_split, sha256_of, stratified_split

WARMUP_SHARE = 0.15  # of the epochs, when --warmup-epochs is not given (TrainConfig's 9 is this share of its 60)
HELP = {
    "learning_rate": f"peak learning rate (default {TrainConfig.learning_rate:g}; a tenth of it with --init)",
    "warmup_epochs": f"epochs of linear warm-up (default {WARMUP_SHARE * 100:.0f}%% of --epochs)",
    "mixed_precision": "train in mixed_bfloat16 (faster with AVX-512 BF16 or AMX, slower on AVX2-only CPUs)",
    "limit_per_class": "use at most N faces per class (smoke runs)",
    "init": "fine-tune this .keras model as it is",
    "freeze_blocks": "with --init: freeze the first N stages",
    "warm_start": "a new network (this config) with every matching layer copied from this .keras model",
    "crop": "training crop side; inference uses the centre crop (48 = none)",
    "jpeg_p": "share of training faces re-compressed as JPEG",
    "keep_epochs": "keep each epoch's weights in the run folder (weight averaging)",
    "residual": "residual stages (a skip connection around each pair of convolutions)",
    "teacher": "distil: an ONNX teacher (e.g. an export.ensemble file) whose probabilities join the labels",
    "teacher_weight": f"the teacher's share of each training target (default {TrainConfig.teacher_weight:g})",
    "label_smoothing": f"default {TrainConfig.label_smoothing:g}; 0 with --teacher (its answers soften the target)",
}
FLAG_NAMES = {"learning_rate": "--lr"}
CHOICES = {"class_weighting": list(get_args(ClassWeighting)), "schedule": list(get_args(Schedule))}


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, TrainConfig]:
    """One flag per ``TrainConfig`` field, derived from the dataclass so an option is declared once."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="Kaggle-layout FER2013 folder or zip")
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumed if it has a backup)")
    for item in fields(TrainConfig):
        if item.name == "extra":
            continue
        default = getattr(defaults, item.name)
        flag = FLAG_NAMES.get(item.name, "--" + item.name.replace("_", "-"))
        help_text = HELP.get(item.name, f"default {default}")
        options: dict[str, Any] = {"dest": item.name, "default": None, "help": help_text}
        if isinstance(default, bool):
            options["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            options.update(type=type(default[0]), nargs=len(default))
        elif item.name in CHOICES:
            options["choices"] = CHOICES[item.name]
        else:
            options["type"] = {int: int, float: float}.get(type(default), str)
            if item.name == "limit_per_class":
                options["type"] = int
        parser.add_argument(flag, **options)
    args = parser.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    if "widths" in given:
        given["widths"] = tuple(given["widths"])
    if args.init and "learning_rate" not in given:
        given["learning_rate"] = defaults.learning_rate / 10
    if "warmup_epochs" not in given:  # the schedule's shape, not a count: 9 of the default 60, 2 of a 10-epoch tune
        given["warmup_epochs"] = round(WARMUP_SHARE * given.get("epochs", defaults.epochs))
    if "teacher" in given and "label_smoothing" not in given:  # s2 and s3, the students (docs/model.md)
        given["label_smoothing"] = 0.0
    return args, replace(defaults, **given)


def class_weights(train: FaceSet, mode: str) -> dict[int, float] | None:
    """Per-class loss weights, normalised to a mean of 1 over the training faces.

    "none" is the default (m4's recipe). "sqrt" softens the inverse frequency: full "balanced" weighting gives
    disgust (1.5% of the faces) a 9x weight, which buys its recall with accuracy on every other class.
    """
    if mode == "none":
        return None
    counts = np.bincount(train.labels, minlength=len(LABELS)).astype(np.float64)
    weights = 1.0 / np.maximum(counts, 1.0)
    if mode == "sqrt":
        weights = np.sqrt(weights)
    weights /= (weights * counts).sum() / counts.sum()
    return {i: float(w) for i, w in enumerate(weights)}


@dataclass(frozen=True)
class Splits:
    train: FaceSet
    val: FaceSet
    test: FaceSet | None  # a customer's fine-tuning folder may have no test/ split
    data_sha256: str


def load_data(source: Path, config: TrainConfig) -> Splits:
    """Stratified train/validation split of ``train/``; ``test/`` is only counted for the run's record here."""
    full = load_split(source, "train", config.limit_per_class)
    keep, held = stratified_split(full.labels, config.val_fraction, config.split_seed)
    test = load_split(source, "test", config.limit_per_class) if has_split(source, "test") else None
    return Splits(full.subset(keep), full.subset(held), test, sha256_of(source))


def backend_versions() -> dict[str, str]:
    """Keras, its backend (TensorFlow here, JAX on the GPU path) and numpy, as the run record keeps them."""
    import keras

    backend = keras.backend.backend()
    return {"keras": keras.__version__, "backend": backend, backend: version(backend), "numpy": np.__version__}


def one_cycle(peak: float, warmup_steps: int, total_steps: int) -> Any:
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then linear decay to 0 at ``total_steps``.

    Piecewise-linear in the step, so a resumed run (BackupAndRestore restores the optimizer's iteration count)
    lands on the same rate it would have had without the interruption.
    """
    import keras
    from keras import ops

    class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step: Any) -> Any:
            step = ops.cast(step, "float32")
            rise = step / max(warmup_steps, 1)
            fall = (total_steps - step) / max(total_steps - warmup_steps, 1)
            return peak * ops.clip(ops.minimum(rise, fall), 0.0, 1.0)

        def get_config(self) -> dict[str, Any]:
            return {"peak": peak, "warmup_steps": warmup_steps, "total_steps": total_steps}

    return OneCycle()


def compiled_model(config: TrainConfig, steps_per_epoch: int) -> Any:
    """A new network (optionally warm-started), or the ``--init`` one with early stages frozen, compiled."""
    import keras

    from training.model import build_model, freeze_early_blocks, load_network, warm_start

    if config.init:
        model = load_network(config.init)
        freeze_early_blocks(model, config.freeze_blocks)
    else:
        model = build_model(config)
        if config.warm_start:
            copied = warm_start(model, config.warm_start)
            print(f"warm start from {config.warm_start}: {len(copied)} layers copied ({', '.join(copied)})")
    warmup_steps = min(config.warmup_epochs, max(config.epochs - 1, 0)) * steps_per_epoch
    total_steps = max(config.epochs * steps_per_epoch, 1)
    if config.schedule == "one_cycle":
        schedule: Any = one_cycle(config.learning_rate, warmup_steps, total_steps)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 10 if warmup_steps else config.learning_rate,
            decay_steps=max(total_steps - warmup_steps, 1),
            warmup_target=config.learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
            alpha=0.01,
        )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=config.momentum, nesterov=True),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    return model


def training_targets(splits: Splits, config: TrainConfig, out: Path) -> Any:
    """The soft targets of a distilled run (``--teacher``), or None: one-hot labels."""
    if not config.teacher:
        return None
    from training.distill import soft_targets, teacher_probabilities

    teacher = teacher_probabilities(Path(config.teacher), splits.train.faces, out)
    agreement = float(np.mean(teacher.argmax(axis=1) == splits.train.labels))
    print(f"teacher {config.teacher}: agrees with {agreement:.1%} of the training labels", flush=True)
    return soft_targets(splits.train.labels, teacher, config.teacher_weight)


def fit(model: Any, splits: Splits, config: TrainConfig, out: Path) -> None:
    """Train with best-on-validation checkpointing, early stopping, a resumable backup and a CSV history.

    Validation is always scored on the labels, so a distilled run is chosen on the same figure as any other."""
    import keras

    callbacks = [
        keras.callbacks.BackupAndRestore(str(out / "backup")),
        keras.callbacks.ModelCheckpoint(
            str(out / "best.keras"), monitor="val_accuracy", mode="max", save_best_only=True
        ),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=config.patience),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
    ]
    if config.keep_epochs:
        (out / "epochs").mkdir(exist_ok=True)
        callbacks.append(
            keras.callbacks.ModelCheckpoint(str(out / "epochs" / "{epoch:03d}.weights.h5"), save_weights_only=True)
        )
    model.fit(
        FaceBatches(splits.train, config, training=True, targets=training_targets(splits, config, out)),
        validation_data=FaceBatches(splits.val, config),
        epochs=config.epochs,
        callbacks=callbacks,
        class_weight=class_weights(splits.train, config.class_weighting),
        verbose=1 if sys.stdout.isatty() else 2,
    )


def score_best(out: Path, splits: Splits) -> dict[str, float]:
    """Validation accuracy of the best checkpoint. The test split is not scored here: the end of a run is where
    candidates are compared, and PublicTest is scored once per shipped file (``training.evaluate``), not per run."""
    from training.model import load_network

    best = load_network(out / "best.keras")
    probabilities = best.predict(splits.val.faces[..., np.newaxis].astype(np.float32), batch_size=256, verbose=0)
    return {"val_accuracy": float(np.mean(probabilities.argmax(axis=1) == splits.val.labels))}


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")

    started = time.time()
    splits = load_data(args.data, config)
    print(
        f"data {args.data} sha256={splits.data_sha256[:12]} train={len(splits.train)} val={len(splits.val)} "
        f"test={len(splits.test) if splits.test else 0} loaded in {time.time() - started:.1f}s",
        flush=True,
    )

    command = shlex.join(["python", "-m", "training.train", *(sys.argv[1:] if argv is None else argv)])
    record: dict[str, Any] = {
        "command": command,
        "config": asdict(config),
        "data": {
            "path": str(args.data),
            "sha256": splits.data_sha256,
            "train": splits.train.class_counts(),
            "val": splits.val.class_counts(),
            "test": splits.test.class_counts() if splits.test else {},
        },
        "versions": backend_versions(),
    }
    if config.teacher:
        from training.distill import file_sha256

        record["teacher"] = {"path": config.teacher, "sha256": file_sha256(Path(config.teacher))}
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    config.save(out / "config.json")

    model = compiled_model(config, steps_per_epoch=int(np.ceil(len(splits.train) / config.batch_size)))
    model.summary(print_fn=lambda line, **_: print(line, flush=True))
    fit(model, splits, config, out)

    record["metrics"] = {**score_best(out, splits), "train_seconds": round(time.time() - started, 1)}
    with (out / "history.csv").open() as history:
        record["epochs_trained"] = sum(1 for _ in history) - 1  # one row per epoch under the header
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["metrics"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
