"""Encoder, decoder and residual stack of the thesis VQ-VAE (functional Keras).

The layout follows the original (Sonnet) model: strided 4x4 convolutions
with ReLU, a residual stack, and a 1x1 convolution to the embedding size;
the decoder mirrors it with transposed convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

__all__ = ["build_decoder", "build_encoder", "residual_stack"]


def _kernel_init() -> keras.initializers.Initializer:
    # Keras's default (Glorot uniform). The thesis used a truncated normal with
    # std 0.02, which starves the sigmoid output of signal: in short runs
    # (minutes, not 246 epochs) it learned ~3x less in the same steps.
    return keras.initializers.GlorotUniform()


def residual_stack(x, *, num_hiddens: int, num_residual_layers: int,
                   num_residual_hiddens: int, name: str):
    """``num_residual_layers`` blocks of (ReLU, 3x3 conv, ReLU, 1x1 conv, skip), then ReLU."""
    for i in range(num_residual_layers):
        h = keras.layers.Activation("relu", name=f"{name}_{i}_relu_a")(x)
        h = keras.layers.Conv2D(num_residual_hiddens, 3, padding="same", kernel_initializer=_kernel_init(),
                                name=f"{name}_{i}_conv3x3")(h)
        h = keras.layers.Activation("relu", name=f"{name}_{i}_relu_b")(h)
        h = keras.layers.Conv2D(num_hiddens, 1, kernel_initializer=_kernel_init(),
                                name=f"{name}_{i}_conv1x1")(h)
        x = keras.layers.Add(name=f"{name}_{i}_skip")([x, h])
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def build_encoder(input_shape: Sequence[int], *, num_hiddens: int, num_residual_layers: int,
                  num_residual_hiddens: int, strides: Sequence[Sequence[int]],
                  embedding_dim: int, name: str = "encoder") -> keras.Model:
    """Images ``(b, *input_shape)`` -> continuous latents ``(b, h, w, embedding_dim)``.

    Parameters
    ----------
    input_shape : (height, width, channels)
        Time-first spectrogram image ``(frames, bins, 1)`` or an image shape.
    strides : list of (time, freq)
        One 4x4 strided convolution (with ReLU) per entry.
    """
    inputs = keras.Input(tuple(input_shape), name="images")
    x = inputs
    for i, stride in enumerate(strides):
        x = keras.layers.Conv2D(num_hiddens, 4, strides=tuple(stride), padding="same",
                                activation="relu", kernel_initializer=_kernel_init(),
                                name=f"down_{i}")(x)
    x = residual_stack(x, num_hiddens=num_hiddens, num_residual_layers=num_residual_layers,
                       num_residual_hiddens=num_residual_hiddens, name="res")
    x = keras.layers.Conv2D(embedding_dim, 1, kernel_initializer=_kernel_init(), name="to_latent")(x)
    return keras.Model(inputs, x, name=name)


def build_decoder(latent_shape: Sequence[int], output_channels: int, *, num_hiddens: int,
                  num_residual_layers: int, num_residual_hiddens: int,
                  strides: Sequence[Sequence[int]], output_activation: str = "sigmoid",
                  name: str = "decoder") -> keras.Model:
    """Latents ``(b, h, w, D)`` -> images ``(b, h * prod(time strides), w * prod(freq strides), C)``.

    3x3 conv, residual stack, then one 4x4 transposed convolution per stride
    (ReLU, the last one linear) followed by ``output_activation``.
    """
    inputs = keras.Input(tuple(latent_shape), name="latents")
    x = keras.layers.Conv2D(num_hiddens, 3, padding="same", kernel_initializer=_kernel_init(),
                            name="from_latent")(inputs)
    x = residual_stack(x, num_hiddens=num_hiddens, num_residual_layers=num_residual_layers,
                       num_residual_hiddens=num_residual_hiddens, name="res")
    reversed_strides = list(strides)[::-1]
    for i, stride in enumerate(reversed_strides):
        last = i == len(reversed_strides) - 1
        x = keras.layers.Conv2DTranspose(output_channels if last else num_hiddens, 4,
                                         strides=tuple(stride), padding="same",
                                         activation=None if last else "relu",
                                         kernel_initializer=_kernel_init(), name=f"up_{i}")(x)
    # float32 output even under mixed precision: the loss compares with [0, 1] images.
    x = keras.layers.Activation(output_activation, dtype="float32", name="output")(x)
    return keras.Model(inputs, x, name=name)
