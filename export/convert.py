"""Keras model -> ONNX ModelProto honouring the service's contract.

The graph is traced from a ``tf.function`` with a fixed ``[None, 48, 48, 1]`` float32 signature rather than
``tf2onnx.convert.from_keras``, which does not follow Keras 3 models reliably. Mixed-precision models are
rebuilt in float32 first: ONNX Runtime's CPU kernels for bfloat16 convolutions are slow or missing, and the
contract promises float32 in and out.

The graph also holds what the network needs around it at inference, so every consumer of the file gets it:
a light Gaussian smoothing of the face where the export asks for one (``export.smoothing``; none by default),
the average of the face and its mirror image, and the calibration temperature. The centre crop is the network's
own first layer (``training.augment``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import onnx
import tensorflow as tf
import tf2onnx

from deepfer.contract import FACE_SIZE, LABELS
from export.smoothing import smoothing_kernel

INPUT_NAME = "face"
OUTPUT_NAME = "probabilities"
OPSET = 17


def float32_copy(model: keras.Model) -> keras.Model:
    """The same network with every layer computing in float32, sharing no state with ``model``."""

    def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone


def served_function(
    model: keras.Model, *, smoothing_sigma: float, test_time_augmentation: bool, temperature: float = 1.0
) -> Callable[[tf.Tensor], tf.Tensor]:
    """faces [N,48,48,1] raw 0..255 -> probabilities [N,7]: the computation the ONNX file holds.

    ``smoothing_sigma`` 0 skips the smoothing; the borders are reflected (OpenCV's default, ``BORDER_REFLECT_101``)
    so the edge pixels are not darkened. ``test_time_augmentation`` averages the face and its mirror image.
    ``temperature`` is ``training.calibration``'s: softmax(log p / T) on the averaged probabilities, so every
    consumer of the file reads calibrated confidences.
    """
    # A NumPy array, not a tf.constant: made inside the traced function it is a graph constant, where a captured
    # eager tensor would become a second graph input.
    kernel = smoothing_kernel(smoothing_sigma)[:, :, np.newaxis, np.newaxis] if smoothing_sigma else None

    def classify(face: tf.Tensor) -> tf.Tensor:
        if kernel is not None:
            padded = tf.pad(face, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
            face = tf.nn.conv2d(padded, kernel, strides=1, padding="VALID")
        probabilities = model(face, training=False)
        if test_time_augmentation:
            probabilities = (probabilities + model(tf.reverse(face, axis=[2]), training=False)) / 2.0
        if temperature != 1.0:
            probabilities = tf.nn.softmax(tf.math.log(tf.maximum(probabilities, 1e-12)) / temperature, axis=-1)
        return probabilities

    return classify


def to_onnx(classify: Callable[[tf.Tensor], tf.Tensor]) -> onnx.ModelProto:
    """Trace ``served_function``'s result with the contract's input signature and convert it."""
    signature = [tf.TensorSpec([None, FACE_SIZE, FACE_SIZE, 1], tf.float32, name=INPUT_NAME)]

    @tf.function(input_signature=signature)
    def traced(face: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: tf.identity(classify(face), name=OUTPUT_NAME)}

    proto, _ = tf2onnx.convert.from_function(traced, input_signature=signature, opset=OPSET)
    _fix_output_shape(proto)
    return proto


def _fix_output_shape(proto: onnx.ModelProto) -> None:
    """Name the batch dimension 'N' on input and output and pin the class dimension to 7."""
    for value in (proto.graph.input[0], proto.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    output_dims = proto.graph.output[0].type.tensor_type.shape.dim
    output_dims[1].dim_value = len(LABELS)
