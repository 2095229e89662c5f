"""``python -m training.train --data fer2013.zip --out runs/NAME``: train the emotion classifier.

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
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from service.contract import LABELS
from training.config import TrainConfig
from training.data import FaceSet, load_split, sha256_of, stratified_split


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, TrainConfig]:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="Kaggle-layout FER2013 folder or zip")
    parser.add_argument("--out", type=Path, required=True, help="run folder (resumed if it has a backup)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.03; 0.003 with --init)")
    parser.add_argument("--widths", type=int, nargs=4, default=list(defaults.widths))
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    parser.add_argument("--class-weighting", choices=["none", "sqrt", "balanced"], default=defaults.class_weighting)
    parser.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--mixed-precision", action="store_true", help="train in mixed_bfloat16 (AMX/GPU)")
    parser.add_argument("--limit-per-class", type=int, default=None, help="use at most N faces per class (smoke runs)")
    parser.add_argument("--init", type=str, default=None, help="fine-tune from this .keras model")
    parser.add_argument("--freeze-blocks", type=int, default=0, help="with --init: freeze the first N stages")
    args = parser.parse_args(argv)
    lr = args.lr if args.lr is not None else (defaults.learning_rate / 10 if args.init else defaults.learning_rate)
    config = replace(
        defaults, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, learning_rate=lr,
        widths=tuple(args.widths), dropout=args.dropout, label_smoothing=args.label_smoothing,
        class_weighting=args.class_weighting, val_fraction=args.val_fraction, patience=args.patience,
        mixed_precision=args.mixed_precision, limit_per_class=args.limit_per_class, init=args.init,
        freeze_blocks=args.freeze_blocks,
    )
    return args, config


def class_weights(train: FaceSet, mode: str) -> dict[int, float] | None:
    """Per-class loss weights, normalised to a mean of 1 over the training faces.

    "sqrt" (the default) softens the inverse frequency: full "balanced" weighting gives disgust (1.5% of the
    faces) a 9x weight, which buys its recall with accuracy on every other class.
    """
    if mode == "none":
        return None
    counts = np.bincount(train.labels, minlength=len(LABELS)).astype(np.float64)
    weights = 1.0 / np.maximum(counts, 1.0)
    if mode == "sqrt":
        weights = np.sqrt(weights)
    weights /= (weights * counts).sum() / counts.sum()
    return {i: float(w) for i, w in enumerate(weights)}


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from training.augment import build_augmenter
    from training.model import build_model, freeze_early_blocks

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")

    # --- data ---------------------------------------------------------------------------------------------
    started = time.time()
    data_sha256 = sha256_of(args.data)
    full = load_split(args.data, "train", config.limit_per_class)
    keep, held = stratified_split(full.labels, config.val_fraction, config.seed)
    train, val = full.subset(keep), full.subset(held)
    test = load_split(args.data, "test", config.limit_per_class)
    print(f"data {args.data} sha256={data_sha256[:12]} train={len(train)} val={len(val)} test={len(test)} "
          f"loaded in {time.time() - started:.1f}s", flush=True)

    command = shlex.join([sys.executable.rsplit("/", 1)[-1], "-m", "training.train", *(argv or sys.argv[1:])])
    record = {
        "command": command,
        "config": asdict(config),
        "data": {"path": str(args.data), "sha256": data_sha256, "train": train.class_counts(),
                 "val": val.class_counts(), "test": test.class_counts()},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
    }
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    config.save(out / "config.json")

    augmenter = build_augmenter(config.seed)

    def dataset(faces: FaceSet, training: bool) -> tf.data.Dataset:
        x = faces.faces[..., np.newaxis].astype(np.float32)
        y = keras.utils.to_categorical(faces.labels, len(LABELS)).astype(np.float32)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).cache()
        if training:
            ds = ds.shuffle(len(faces), seed=config.seed, reshuffle_each_iteration=True)
        ds = ds.batch(config.batch_size)
        if training:
            ds = ds.map(lambda a, b: (augmenter(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    train_ds, val_ds = dataset(train, True), dataset(val, False)

    # --- model --------------------------------------------------------------------------------------------
    if config.init:
        model = keras.models.load_model(config.init)
        freeze_early_blocks(model, config.freeze_blocks)
    else:
        model = build_model(config)
    steps_per_epoch = int(np.ceil(len(train) / config.batch_size))
    warmup_steps = min(config.warmup_epochs, max(config.epochs - 1, 0)) * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate / 10 if warmup_steps else config.learning_rate,
        decay_steps=max(config.epochs * steps_per_epoch - warmup_steps, 1),
        warmup_target=config.learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
        alpha=0.01,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=config.momentum, nesterov=True),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
    model.summary(print_fn=lambda line, **_: print(line, flush=True))

    # --- fit ----------------------------------------------------------------------------------------------
    best_path = out / "best.keras"
    callbacks = [
        keras.callbacks.BackupAndRestore(str(out / "backup")),
        keras.callbacks.ModelCheckpoint(str(best_path), monitor="val_accuracy", mode="max", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=config.patience),
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
    ]
    model.fit(
        train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks,
        class_weight=class_weights(train, config.class_weighting), verbose=1 if sys.stdout.isatty() else 2,
    )

    # --- record -------------------------------------------------------------------------------------------
    # The test split is scored once, for the record; model selection above used the validation split only.
    best = keras.models.load_model(best_path)
    metrics = {}
    for name, faces in (("val", val), ("test", test)):
        probabilities = best.predict(faces.faces[..., np.newaxis].astype(np.float32), batch_size=256, verbose=0)
        metrics[f"{name}_accuracy"] = float(np.mean(probabilities.argmax(axis=1) == faces.labels))
    metrics["train_seconds"] = round(time.time() - started, 1)
    record["metrics"] = metrics
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(metrics), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
