"""Train-time augmentation as the network's first layer, written in ``keras.ops`` so it runs on any backend.

Why a layer and not a tf.data step: the same code then runs on the CPU under TensorFlow and on an accelerator
under JAX (which has no tf.data), and inference mode is just the centre crop, so the exported graph carries the
test-time framing with it and nothing else.

What it does, in the order a camera would: a random crop of the 48 px face (``TrainConfig.crop``: 44 px by default)
(the published 72-73% networks all train on crops smaller than the face; an integer crop does not resample), a
mirror, and only for half of the faces a small rotation and scale (the bilinear resampling that blurred every v3
training face); then exposure (gamma, contrast, brightness), defocus blur, sensor noise and random erasing
(occlusion by hands, microphones, glasses). JPEG compression has no ``keras.ops`` form: ``training.batches``
applies it per image on the host.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="deepfer")
class FaceAugment(keras.layers.Layer):
    """[B, 48, 48, 1] float 0..255 -> [B, crop, crop, 1]: augmented crops in training, the centre crop otherwise."""

    def __init__(
        self,
        crop: int = 40,
        *,
        seed: int = 1337,
        affine_p: float = 0.5,
        rotate_deg: float = 10.0,
        scale: float = 0.1,
        photometric_p: float = 0.5,
        blur_p: float = 0.2,
        noise_p: float = 0.3,
        noise_sigma: float = 16.0,
        erase_p: float = 0.5,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dtype", "float32")  # augment in float32 even under mixed precision
        super().__init__(**kwargs)
        self.crop = crop
        self.seed = seed
        self.affine_p = affine_p
        self.rotate_deg = rotate_deg
        self.scale = scale
        self.photometric_p = photometric_p
        self.blur_p = blur_p
        self.noise_p = noise_p
        self.noise_sigma = noise_sigma
        self.erase_p = erase_p
        self.seed_generator = keras.random.SeedGenerator(seed)

    def get_config(self) -> dict[str, Any]:
        names = ("crop", "seed", "affine_p", "rotate_deg", "scale", "photometric_p", "blur_p", "noise_p")
        return {
            **super().get_config(),
            **{name: getattr(self, name) for name in names},
            "noise_sigma": self.noise_sigma,
            "erase_p": self.erase_p,
        }

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], self.crop, self.crop, input_shape[3])

    def call(self, images: Any, training: bool | None = None) -> Any:
        if not training:
            return self._centre(images)
        batch = ops.shape(images)[0]
        images = self._mirror(images, batch)
        images = self._centre(self._geometry(images, batch))
        images = self._exposure(images, batch)
        images = self._blur(images, batch)
        images = self._noise(images, batch)
        return self._erase(images, batch)

    def _uniform(self, shape: tuple[Any, ...], low: float = 0.0, high: float = 1.0) -> Any:
        return keras.random.uniform(shape, low, high, seed=self.seed_generator)

    def _chosen(self, batch: Any, p: float) -> Any:
        """[B] float mask: 1 for the faces this step applies to."""
        return ops.cast(self._uniform((batch,)) < p, "float32")

    def _centre(self, images: Any) -> Any:
        margin = (ops.shape(images)[1] - self.crop) // 2
        return images[:, margin : margin + self.crop, margin : margin + self.crop, :]

    def _mirror(self, images: Any, batch: Any) -> Any:
        flip = ops.reshape(self._chosen(batch, 0.5), (-1, 1, 1, 1))
        return flip * ops.flip(images, axis=2) + (1.0 - flip) * images

    def _geometry(self, images: Any, batch: Any) -> Any:
        """An integer shift (the crop's position) for every face; rotation and scale only for ``affine_p`` of them.

        Without rotation and scale the transform is an integer translation, which bilinear sampling reproduces
        exactly: those faces are cropped, not resampled.
        """
        size = ops.cast(ops.shape(images)[1], "float32")
        margin = (size - self.crop) / 2.0
        shift = ops.floor(self._uniform((2, batch), -margin, margin + 1.0))
        shift = ops.clip(shift, -margin, margin)
        on = self._chosen(batch, self.affine_p)
        angle = on * self._uniform((batch,), -1.0, 1.0) * (self.rotate_deg * math.pi / 180.0)
        zoom = 1.0 + on * self._uniform((batch,), -self.scale, self.scale)
        cos, sin = ops.cos(angle) / zoom, ops.sin(angle) / zoom
        centre = (size - 1.0) / 2.0
        # Output pixel p samples input M (p - c) + c + shift, with M a rotation scaled by 1/zoom.
        transform = ops.stack(
            [
                cos,
                -sin,
                centre - cos * centre + sin * centre + shift[0],
                sin,
                cos,
                centre - sin * centre - cos * centre + shift[1],
                ops.zeros_like(cos),
                ops.zeros_like(cos),
            ],
            axis=1,
        )
        return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="reflect")

    def _exposure(self, images: Any, batch: Any) -> Any:
        """Gamma 0.6-1.6, contrast 0.5-1.4 about the face's mean, brightness ±40 grey levels."""
        on = ops.reshape(self._chosen(batch, self.photometric_p), (-1, 1, 1, 1))
        gamma = ops.exp(on * ops.reshape(self._uniform((batch,), math.log(0.6), math.log(1.6)), (-1, 1, 1, 1)))
        contrast = 1.0 + on * ops.reshape(self._uniform((batch,), -0.5, 0.4), (-1, 1, 1, 1))
        brightness = on * ops.reshape(self._uniform((batch,), -40.0, 40.0), (-1, 1, 1, 1))
        images = 255.0 * ops.power(ops.clip(images / 255.0, 0.0, 1.0), gamma)
        mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
        return ops.clip((images - mean) * contrast + mean + brightness, 0.0, 255.0)

    def _blur(self, images: Any, batch: Any) -> Any:
        """A 5-tap separable Gaussian of sigma 0.5-1.3 (one per step), mixed in for ``blur_p`` of the faces.

        Written as weighted sums of shifted slices: a 1-channel ``conv`` is ~20x slower on the CPU kernels.
        """
        sigma = self._uniform((), 0.5, 1.3)
        taps = ops.exp(-ops.square(ops.arange(-2, 3, dtype="float32")) / (2.0 * ops.square(sigma)))
        taps = taps / ops.sum(taps)
        side = ops.shape(images)[1]
        padded = ops.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
        rows = sum(taps[k] * padded[:, k : k + side, :, :] for k in range(5))
        blurred = sum(taps[k] * rows[:, :, k : k + side, :] for k in range(5))
        on = ops.reshape(self._chosen(batch, self.blur_p), (-1, 1, 1, 1))
        return on * blurred + (1.0 - on) * images

    def _noise(self, images: Any, batch: Any) -> Any:
        sigma = self._chosen(batch, self.noise_p) * self._uniform((batch,), 2.0, self.noise_sigma)
        noise = keras.random.normal(ops.shape(images), seed=self.seed_generator) * ops.reshape(sigma, (-1, 1, 1, 1))
        return ops.clip(images + noise, 0.0, 255.0)

    def _erase(self, images: Any, batch: Any) -> Any:
        """Random erasing (Zhong et al. 2017): a rectangle of 2-25% of the face, aspect 0.3-3.3, filled with noise."""
        size = float(self.crop)
        area = self._uniform((batch,), 0.02, 0.25) * size * size
        aspect = ops.exp(self._uniform((batch,), math.log(0.3), math.log(3.3)))
        height = ops.minimum(ops.sqrt(area * aspect), size)
        width = ops.minimum(ops.sqrt(area / aspect), size)
        top = self._uniform((batch,)) * (size - height)
        left = self._uniform((batch,)) * (size - width)
        rows = ops.reshape(ops.arange(self.crop, dtype="float32"), (1, -1, 1, 1))
        cols = ops.reshape(ops.arange(self.crop, dtype="float32"), (1, 1, -1, 1))

        def column(v: Any) -> Any:
            return ops.reshape(v, (-1, 1, 1, 1))

        inside = (
            (rows >= column(top))
            & (rows < column(top + height))
            & (cols >= column(left))
            & (cols < column(left + width))
        )
        mask = ops.cast(inside, "float32") * column(self._chosen(batch, self.erase_p))
        fill = self._uniform(ops.shape(images), 0.0, 255.0)
        return mask * fill + (1.0 - mask) * images
