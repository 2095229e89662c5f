"""DeepFER: facial emotion recognition served with ONNX Runtime."""
