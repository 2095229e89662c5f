"""The emotion classifier: a compact VGG-style network with batch normalisation.

Input is raw grey pixels 0..255 (the ONNX contract); scaling happens in the first layer, so every consumer of
the exported graph feeds the same thing the service does.
"""

from __future__ import annotations

from pathlib import Path

import keras

from deepfer.contract import INPUT_SHAPE, LABELS
from training.augment import FaceAugment
from training.config import TrainConfig


def _conv_bn(x: keras.KerasTensor, filters: int, name: str, weight_decay: float, size: int = 3) -> keras.KerasTensor:
    x = keras.layers.Conv2D(
        filters,
        size,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(weight_decay),
        name=f"{name}_conv",
    )(x)
    return keras.layers.BatchNormalization(name=f"{name}_bn")(x)


def _conv_bn_relu(x: keras.KerasTensor, filters: int, name: str, weight_decay: float) -> keras.KerasTensor:
    return keras.layers.Activation("relu", name=f"{name}_relu")(_conv_bn(x, filters, name, weight_decay))


def _stage(x: keras.KerasTensor, filters: int, name: str, config: TrainConfig) -> keras.KerasTensor:
    """Two 3x3 convolutions; with ``config.residual`` their input is added back before the second ReLU (a 1x1
    projection where the width changes), the residual variant that makes an ensemble member differ in kind."""
    y = _conv_bn_relu(x, filters, f"{name}_a", config.weight_decay)
    if not config.residual:
        return _conv_bn_relu(y, filters, f"{name}_b", config.weight_decay)
    y = _conv_bn(y, filters, f"{name}_b", config.weight_decay)
    shortcut = x if x.shape[-1] == filters else _conv_bn(x, filters, f"{name}_skip", config.weight_decay, size=1)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.Activation("relu", name=f"{name}_b_relu")(y)


def build_model(config: TrainConfig) -> keras.Model:
    """48x48x1 -> crop -> four stages of two 3x3 convolutions -> 2x2 map (40 px crop) -> dense head -> 7 softmax.

    Stage names are ``block1``..``block4`` so fine-tuning can freeze the early ones by name. The input stays the
    48 px contract face: the crop layer takes random crops in training and the centre crop at inference.
    """
    inputs = keras.Input(shape=INPUT_SHAPE, name="face")
    x = FaceAugment(
        config.crop,
        seed=config.seed,
        photometric_p=config.photometric_p,
        blur_p=config.blur_p,
        noise_p=config.noise_p,
        erase_p=config.erase_p,
        name="augment",
    )(inputs)
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(x)
    for block, filters in enumerate(config.widths, start=1):
        x = _stage(x, filters, f"block{block}", config)
        x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
        # Light spatial dropout in the early stages, full dropout in the head: FER2013 overfits fast.
        x = keras.layers.SpatialDropout2D(0.1, name=f"block{block}_drop")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(config.dropout, name="head_drop1")(x)
    x = keras.layers.Dense(
        config.dense_units,
        use_bias=False,
        kernel_regularizer=keras.regularizers.L2(config.weight_decay),
        name="head_dense",
    )(x)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.Activation("relu", name="head_relu")(x)
    x = keras.layers.Dropout(config.dropout, name="head_drop2")(x)
    # float32 softmax even under mixed precision, so probabilities sum to 1 to float32 accuracy.
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="deepfer_resvgg" if config.residual else "deepfer_vgg")


def freeze_early_blocks(model: keras.Model, blocks: int) -> None:
    """Freeze stages ``block1``..``block{blocks}`` for fine-tuning on a small customer dataset."""
    prefixes = tuple(f"block{i}_" for i in range(1, blocks + 1))
    for layer in model.layers:
        if layer.name.startswith(prefixes):
            layer.trainable = False


def load_network(path: str | Path) -> keras.Model:
    """``keras.models.load_model`` with this module imported, so the ``deepfer>FaceAugment`` layer resolves.

    Never compiled: a loaded network is only run, or compiled afresh for a new schedule (``--init``), and a run's
    one-cycle schedule is a closure of ``training.train`` that Keras cannot rebuild from a checkpoint (fine-tuning
    from a one-cycle run's ``best.keras`` failed with "Could not locate class 'OneCycle'")."""
    return keras.models.load_model(path, compile=False)


def warm_start(model: keras.Model, source: str) -> list[str]:
    """Copy every layer of ``source`` whose name and weight shapes match into ``model``; return their names.

    Why: the run state under ~/.cache does not survive a new machine, so a long schedule continues from the
    last committed weights instead of from zero, and an architecture change (a new crop size changes only the
    head's input) keeps every convolution it can.
    """
    donor = {layer.name: layer for layer in load_network(source).layers}
    copied = []
    for layer in model.layers:
        match = donor.get(layer.name)
        if match is None or not layer.weights:
            continue
        weights = match.get_weights()
        if [w.shape for w in weights] == [tuple(v.shape) for v in layer.weights]:
            layer.set_weights(weights)
            copied.append(layer.name)
    return copied
