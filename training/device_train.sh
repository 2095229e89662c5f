#!/usr/bin/env bash
# The GPU path: train the emotion network on the lent accelerator under Keras's JAX backend (the machine has
# JAX and no TensorFlow), and return the run folder through $OUT; export and evaluation stay on this machine.
# Prepared here with `python -m training.carry --data ../shared/data/fer2013.zip`, then one device call:
#
#   run(command="bash training/device_train.sh --epochs 250", carry=[".carry"], timeout_s=540)
#
# Options after the script name go to `python -m training.train`. The run's epochs are averaged there
# (`training.average`) and then dropped, with the resumable backup, so what comes back stays small.
# PYTHON and CARRY let the CI test run this same script on the CPU (tests/training/test_training_smoke.py).
set -euo pipefail
PYTHON="${PYTHON:-python3}"
CARRY="${CARRY:-.carry}"
DATA="${TMPDIR:-/tmp}/deepfer-data"
export KERAS_BACKEND="${KERAS_BACKEND:-jax}" PYTHONUNBUFFERED=1  # before any import of keras

if ! "$PYTHON" -c 'import keras' 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "${TMPDIR:-/tmp}/deepfer-site" "$CARRY"/wheels/*.whl
    export PYTHONPATH="${TMPDIR:-/tmp}/deepfer-site${PYTHONPATH:+:$PYTHONPATH}"
fi
# The package is the service/ folder, installed as `deepfer` here; there it is put on the path as that name.
mkdir -p "${TMPDIR:-/tmp}/deepfer-packages"
ln -sfn "$PWD/service" "${TMPDIR:-/tmp}/deepfer-packages/deepfer"
export PYTHONPATH="${TMPDIR:-/tmp}/deepfer-packages:$PWD${PYTHONPATH:+:$PYTHONPATH}"
rm -rf "$DATA" && mkdir -p "$DATA" && tar -xJf "$CARRY/fer2013-train.tar.xz" -C "$DATA"

mkdir -p "$OUT/run"
cp "$CARRY/data.json" "$OUT/run/data.json"
"$PYTHON" -c 'import jax; print("jax", jax.__version__, jax.devices())'
"$PYTHON" -m training.train --data "$DATA" --out "$OUT/run" --keep-epochs "$@" 2>&1 | tee "$OUT/train.log"
"$PYTHON" -m training.average --run "$OUT/run" --last 1 5 10 2>&1 | tee -a "$OUT/train.log"
rm -rf "$OUT/run/epochs" "$OUT/run/backup"
