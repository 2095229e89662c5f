"""Train-only augmentation, applied in the tf.data pipeline so that none of it reaches the exported graph.

Chosen for faces: small shifts, zooms and rotations (FER2013's registration is loose), horizontal flips
(expressions are roughly symmetric), and brightness/contrast changes (the photos come from every kind of
camera). No vertical flips or large rotations: an upside-down face is not a face the service will be sent.
"""

from __future__ import annotations

import keras


def build_augmenter(seed: int) -> keras.Sequential:
    """Batch of float32 [B, 48, 48, 1] in 0..255 -> augmented batch, same shape and range."""
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(12 / 360, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomZoom((-0.15, 0.15), fill_mode="reflect", seed=seed + 2),
            keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 3),
            keras.layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed + 4),
            keras.layers.RandomContrast(0.3, value_range=(0, 255), seed=seed + 5),
        ],
        name="augment",
    )
