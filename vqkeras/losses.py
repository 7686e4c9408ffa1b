"""Losses for spectrogram images: per-pixel error plus structure, and GAN terms.

`SpectrogramStructureLoss` adds a (multi-scale) SSIM term to the per-pixel
mean squared error of decoded dB images: ViSQOL compares spectrogram
patches by their structural similarity (NSIM), which a per-pixel average
does not reward. The least-squares GAN losses and `feature_matching` are
what `vqkeras.codec.adversarial` trains a decoder against a discriminator
with. Everything is written in `keras.ops` and runs on every backend.

>>> import numpy as np
>>> loss = SpectrogramStructureLoss(ssim_weight=0.05)
>>> image = np.random.default_rng(0).random((2, 32, 32, 1)).astype("float32")
>>> round(float(loss(image, image)), 6)
0.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

__all__ = ["SpectrogramStructureLoss", "feature_matching", "lsgan_discriminator_loss",
           "lsgan_generator_loss", "multiscale_ssim"]


def multiscale_ssim(y_true, y_pred, *, scales: int = 2, max_val: float = 1.0,
                    filter_size: int = 7, filter_sigma: float = 1.5):
    """Mean of SSIM at ``scales`` dyadic scales, per example.

    Scale 0 is the image itself; each further scale halves both axes with a
    2x2 average. A plain mean over scales, not Wang et al.'s product of
    contrast-structure terms: each scale's term stays a smooth, bounded
    function of the image, which trains stably.

    Parameters
    ----------
    y_true, y_pred : tensor [shape=(batch, height, width, channels)]
        Images in ``[0, max_val]`` (``y_pred`` may leave it slightly).
    scales : int
        Number of scales (>= 1); each scale's sides must stay >= ``filter_size``.
    max_val : float
        Dynamic range of the images.
    filter_size, filter_sigma : int, float
        Gaussian window of `keras.ops.image.ssim`.

    Returns
    -------
    tensor [shape=(batch,)]
        In [-1, 1]; 1 for identical images.
    """
    if int(scales) < 1:
        raise ValueError(f"scales must be >= 1. Received: scales={scales}")
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    total = 0.0
    for scale in range(int(scales)):
        if scale:
            y_true = ops.average_pool(y_true, 2, strides=2, padding="valid")
            y_pred = ops.average_pool(y_pred, 2, strides=2, padding="valid")
        total = total + ops.image.ssim(y_true, y_pred, max_val=max_val, filter_size=filter_size,
                                       filter_sigma=filter_sigma, data_format="channels_last")
    return total / float(scales)


@keras.saving.register_keras_serializable(package="vqkeras")
class SpectrogramStructureLoss(keras.losses.Loss):
    """Per-pixel MSE plus ``ssim_weight * (1 - multi-scale SSIM)`` of spectrogram images.

    Parameters
    ----------
    ssim_weight : float
        Weight of the structural term. The MSE of a trained codec is about
        2e-3 per pixel and ``1 - SSIM`` about 0.1-0.2, so weights of 0.01-0.1
        give the two terms comparable gradients.
    scales : int
        SSIM scales (`multiscale_ssim`).
    filter_size : int
        SSIM window (pixels; a 16 kHz, 512/128 spectrogram pixel is 8 ms x 31 Hz).
    """

    def __init__(self, ssim_weight: float = 0.05, scales: int = 2, filter_size: int = 7,
                 name: str = "spectrogram_structure_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        if not float(ssim_weight) >= 0:
            raise ValueError(f"ssim_weight must be >= 0. Received: ssim_weight={ssim_weight}")
        self.ssim_weight = float(ssim_weight)
        self.scales = int(scales)
        self.filter_size = int(filter_size)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        squared = ops.square(y_pred - y_true)
        mse = ops.mean(ops.reshape(squared, (ops.shape(squared)[0], -1)), axis=-1)
        if self.ssim_weight == 0:
            return mse
        ssim = multiscale_ssim(y_true, y_pred, scales=self.scales, filter_size=self.filter_size)
        return mse + self.ssim_weight * (1.0 - ssim)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ssim_weight": self.ssim_weight, "scales": self.scales,
                "filter_size": self.filter_size}


def lsgan_discriminator_loss(real_logits: Sequence, fake_logits: Sequence):
    """Least-squares GAN loss of a (multi-scale) discriminator: real -> 1, fake -> 0.

    Parameters
    ----------
    real_logits, fake_logits : sequence of tensors
        One patch map per scale, for real and generated images.

    Returns
    -------
    scalar tensor: the sum over scales of each scale's mean.
    """
    return sum(ops.mean(ops.square(1.0 - ops.cast(r, "float32"))) +
               ops.mean(ops.square(ops.cast(f, "float32")))
               for r, f in zip(real_logits, fake_logits))


def lsgan_generator_loss(fake_logits: Sequence):
    """Least-squares GAN loss of the generator: its images should score 1."""
    return sum(ops.mean(ops.square(1.0 - ops.cast(f, "float32"))) for f in fake_logits)


def feature_matching(real_features: Sequence, fake_features: Sequence):
    """Mean absolute difference of discriminator features, each layer relative to the
    real features' mean magnitude, averaged over layers (MelGAN's feature loss,
    normalised so that layers of any scale weigh alike)."""
    terms = []
    for r, f in zip(real_features, fake_features):
        r = ops.stop_gradient(ops.cast(r, "float32"))
        f = ops.cast(f, "float32")
        terms.append(ops.mean(ops.abs(r - f)) / (ops.mean(ops.abs(r)) + 1e-6))
    if not terms:
        raise ValueError("feature_matching needs at least one feature map")
    return sum(terms) / float(len(terms))
