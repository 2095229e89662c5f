"""Keras model -> ONNX ModelProto honouring the service's contract.

The graph is traced from a ``tf.function`` with a fixed ``[None, 48, 48, 1]`` float32 signature rather than
``tf2onnx.convert.from_keras``, which does not follow Keras 3 models reliably. Mixed-precision models are
rebuilt in float32 first: ONNX Runtime's CPU kernels for bfloat16 convolutions are slow or missing, and the
contract promises float32 in and out.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import onnx
import tensorflow as tf
import tf2onnx

from service.contract import FACE_SIZE, LABELS

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


def to_onnx(model: keras.Model, *, test_time_augmentation: bool) -> onnx.ModelProto:
    """Convert a float32 model; with ``test_time_augmentation`` the graph averages the face and its mirror image.

    The flip lives inside the graph so every consumer of the file (the service, evaluation, outside tools)
    gets the same, slightly more accurate, probabilities.
    """
    signature = [tf.TensorSpec([None, FACE_SIZE, FACE_SIZE, 1], tf.float32, name=INPUT_NAME)]

    @tf.function(input_signature=signature)
    def classify(face: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = model(face, training=False)
        if test_time_augmentation:
            mirrored = model(tf.reverse(face, axis=[2]), training=False)
            probabilities = (probabilities + mirrored) / 2.0
        return {OUTPUT_NAME: tf.identity(probabilities, name=OUTPUT_NAME)}

    proto, _ = tf2onnx.convert.from_function(classify, input_signature=signature, opset=OPSET)
    _fix_output_shape(proto)
    return proto


def _fix_output_shape(proto: onnx.ModelProto) -> None:
    """Name the batch dimension 'N' on input and output and pin the class dimension to 7."""
    for value in (proto.graph.input[0], proto.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    output_dims = proto.graph.output[0].type.tensor_type.shape.dim
    output_dims[1].dim_value = len(LABELS)
