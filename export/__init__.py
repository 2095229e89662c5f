"""Keras -> ONNX export of the emotion classifier (tf2onnx), writing the ONNX contract of deepfer.contract."""
