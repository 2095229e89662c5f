"""Training throughput: faces/s of the bare step against the full input pipeline, and one epoch's time.

    python -m bench.training_throughput --data ../shared/data/fer2013.zip [--steps 30] [--mixed-precision] [train flags]

Both sides go through ``model.fit`` with the same compiled network (its first layer augments, as in training):
- bare step: forward, backward and update on batches already in memory (numpy arrays, no shuffle or JPEG work);
- pipeline: ``training.batches.FaceBatches`` as ``training.train`` feeds it (seeded shuffle, JPEG re-compression).
The pipeline's overhead is ``bare / pipeline - 1``; the target is at most 15%. One epoch's time is estimated from
the pipeline rate over the run's training faces, plus one validation pass timed here. Any ``training.train`` flag
(``--crop``, ``--widths``, ...) applies, so a member's recipe is measured as it will train. Pause other CPU work
first (a background training run: SIGSTOP its Python process), and note the host: figures compare only within
one run on one host. Writes ``bench/results/training_throughput-*.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.record import save

TARGET_OVERHEAD = 0.15


def cpu_flags() -> list[str]:
    """The AVX-512 features of this host: training speed differs ~4x between AVX-512 and AVX2-only hosts."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return sorted(set(re.findall(r"\bavx512[a-z_0-9]*", text)))


def timed_fit(model: Any, steps: int, **data: Any) -> float:
    """Seconds for ``steps`` training steps of ``model.fit`` (tracing is paid by a warm-up call before)."""
    started = time.perf_counter()
    model.fit(**data, steps_per_epoch=steps, epochs=1, verbose=0)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per side (default 30)")
    args, train_argv = parser.parse_known_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from training.batches import FaceBatches
    from training.train import compiled_model, load_data, parse_args

    train_args, config = parse_args(["--out", "/dev/null", *train_argv])
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    splits = load_data(train_args.data, config)
    steps_per_epoch = int(np.ceil(len(splits.train) / config.batch_size))
    model = compiled_model(config, steps_per_epoch)

    pipeline = FaceBatches(splits.train, config, training=True)
    cached = [pipeline[i] for i in range(min(args.steps, len(pipeline)))]
    x = np.concatenate([batch[0] for batch in cached])
    y = np.concatenate([batch[1] for batch in cached])
    bare_data = {"x": x, "y": y, "batch_size": config.batch_size}
    timed_fit(model, 2, **bare_data)  # warm-up: tracing and oneDNN primitives

    # Interleaved twice, so drift on a shared host falls on both sides alike.
    bare_seconds, pipeline_seconds = [], []
    for _ in range(2):
        bare_seconds.append(timed_fit(model, len(cached), **bare_data))
        pipeline_seconds.append(timed_fit(model, len(cached), x=pipeline))
    faces = len(cached) * config.batch_size
    bare_rate = faces / min(bare_seconds)
    pipeline_rate = faces / min(pipeline_seconds)

    started = time.perf_counter()
    model.evaluate(FaceBatches(splits.val, config), verbose=0)
    validation_seconds = time.perf_counter() - started
    overhead = bare_rate / pipeline_rate - 1.0
    record = {
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "avx512": cpu_flags()},
        "config": {
            "batch_size": config.batch_size,
            "crop": config.crop,
            "widths": list(config.widths),
            "mixed_precision": config.mixed_precision,
        },
        "steps": len(cached),
        "bare_step_faces_per_s": round(bare_rate, 1),
        "pipeline_faces_per_s": round(pipeline_rate, 1),
        "pipeline_overhead": round(overhead, 3),
        "target_overhead": TARGET_OVERHEAD,
        "validation_seconds": round(validation_seconds, 1),
        "epoch_seconds": round(len(splits.train) / pipeline_rate + validation_seconds, 1),
    }
    print(
        f"bare step {bare_rate:.0f} faces/s, pipeline {pipeline_rate:.0f} faces/s (overhead {overhead:+.1%}, "
        f"target <= {TARGET_OVERHEAD:.0%}); one epoch ~{record['epoch_seconds']:.0f} s "
        f"({len(splits.train)} faces + validation {validation_seconds:.1f} s)"
    )
    save("training_throughput", record)
    return 0 if overhead <= TARGET_OVERHEAD else 1


if __name__ == "__main__":
    raise SystemExit(main())
