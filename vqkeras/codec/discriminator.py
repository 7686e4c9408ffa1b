"""A small multi-scale 2-D patch discriminator on spectrogram images.

It looks at log-magnitude (dB) images only, no waveform: each scale (the
image, then 2x2-averaged copies) is a stack of strided 4x4 convolutions with
leaky ReLUs that ends in a map of real/fake scores, one per image patch
(PatchGAN). Its intermediate feature maps feed the feature-matching loss
(`vqkeras.losses.feature_matching`).

>>> disc = build_patch_discriminator((64, 32, 1), scales=2, channels=(8, 16))
>>> features, logits = split_outputs(disc(np.zeros((1, 64, 32, 1), "float32")), scales=2,
...                                  depth=2)
>>> [tuple(l.shape) for l in logits]
[(1, 16, 8, 1), (1, 8, 4, 1)]
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np  # noqa: F401  (doctest)

__all__ = ["build_patch_discriminator", "split_outputs"]


def build_patch_discriminator(image_shape: Sequence[int], *, scales: int = 2,
                              channels: Sequence[int] = (16, 32, 64),
                              name: str = "patch_discriminator") -> keras.Model:
    """Build the discriminator as a functional model.

    Parameters
    ----------
    image_shape : (height, width, channels)
        Spectrogram image shape without the batch axis.
    scales : int
        Number of image scales; scale ``s`` sees the image averaged over
        ``2^s x 2^s`` pixels.
    channels : sequence of int
        Filters of the strided 4x4 convolutions of each scale (each halves
        both sides).

    Returns
    -------
    keras.Model
        Outputs a flat list: for each scale, its ``len(channels)`` feature
        maps, then its patch-score map (linear). `split_outputs` separates them.
    """
    if int(scales) < 1 or not channels:
        raise ValueError(f"scales must be >= 1 and channels non-empty. Received: scales={scales}, "
                         f"channels={channels}")
    inputs = keras.Input(tuple(int(s) for s in image_shape), name="image")
    outputs = []
    x = inputs
    for s in range(int(scales)):
        if s:
            x = keras.layers.AveragePooling2D(2, padding="same", name=f"pool{s}")(x)
        h = x
        for i, filters in enumerate(channels):
            h = keras.layers.Conv2D(int(filters), 4, strides=2, padding="same",
                                    name=f"s{s}_conv{i}")(h)
            h = keras.layers.LeakyReLU(0.2, name=f"s{s}_act{i}")(h)
            outputs.append(h)
        outputs.append(keras.layers.Conv2D(1, 3, padding="same", name=f"s{s}_score")(h))
    return keras.Model(inputs, outputs, name=name)


def split_outputs(outputs: Sequence, *, scales: int, depth: int) -> tuple[list, list]:
    """Split the discriminator's flat output list into (feature maps, patch-score maps)."""
    outputs = list(outputs)
    if len(outputs) != scales * (depth + 1):
        raise ValueError(f"expected {scales * (depth + 1)} outputs for {scales} scales of depth "
                         f"{depth}; received {len(outputs)}")
    features, logits = [], []
    for s in range(scales):
        block = outputs[s * (depth + 1):(s + 1) * (depth + 1)]
        features += block[:-1]
        logits.append(block[-1])
    return features, logits
