"""Offline training pipeline (TensorFlow/Keras). Never imported by the service."""
