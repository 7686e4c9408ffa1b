"""Encoder, decoder and residual stack of the thesis VQ-VAE (functional Keras).

The layout follows the original (Sonnet) model: strided 4x4 convolutions
with ReLU, a residual stack, and a 1x1 convolution to the embedding size;
the decoder mirrors it with transposed convolutions.

Two options swap the resampling convolutions for equivalents that XLA on CPU
(the JAX backend) trains several times faster, with the same parameter count
and receptive field (see `vqkeras.experiments.models.resampling`):

- ``downsampling="space_to_depth"``: space-to-depth by the stride, then a
  stride-1 convolution of kernel ``ceil(4 / stride)`` (2x2 for stride 2),
  instead of the 4x4 strided convolution (``"strided"``, the default);
- ``upsampling="subpixel"``: a stride-1 convolution of kernel
  ``ceil(4 / stride)`` to ``stride_t * stride_f`` times the channels, then
  depth-to-space, instead of the 4x4 transposed convolution
  (``"transpose"``, the default); ``"resize"``: nearest-neighbour upsampling,
  then a 4x4 convolution (4x the multiply-adds of ``"subpixel"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

from vqkeras.experiments.models.resampling import DepthToSpace, SpaceToDepth

__all__ = ["DOWNSAMPLING", "UPSAMPLING", "build_decoder", "build_encoder", "downsample",
           "residual_stack", "upsample"]

UPSAMPLING = ("transpose", "subpixel", "resize")
DOWNSAMPLING = ("strided", "space_to_depth")
_KERNEL = 4  # the thesis's resampling kernel


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}. "
                         f"Received: {name}={value!r}")


def _sub_kernel(kernel: int, stride: Sequence[int]) -> tuple[int, int]:
    """Kernel of the stride-1 convolution that replaces a `kernel`-sized one of this stride."""
    return tuple(math.ceil(kernel / s) for s in stride)


def downsample(x, filters: int, stride: Sequence[int], mode: str = "strided", *,
               kernel: int = _KERNEL, activation="relu", name: str):
    """A `kernel`-sized convolution of stride `stride`, taken as `mode` says (module docstring)."""
    _check_choice("downsampling", mode, DOWNSAMPLING)
    stride = tuple(stride)
    if mode == "strided":
        return keras.layers.Conv2D(filters, kernel, strides=stride, padding="same",
                                   activation=activation, kernel_initializer=_kernel_init(),
                                   name=name)(x)
    x = SpaceToDepth(stride, name=f"{name}_s2d")(x)
    return keras.layers.Conv2D(filters, _sub_kernel(kernel, stride), padding="same",
                               activation=activation, kernel_initializer=_kernel_init(), name=name)(x)


def upsample(x, filters: int, stride: Sequence[int], mode: str = "transpose", *,
             kernel: int = _KERNEL, activation=None, name: str):
    """A `kernel`-sized transposed convolution of stride `stride`, or its replacement `mode`."""
    _check_choice("upsampling", mode, UPSAMPLING)
    stride = tuple(stride)
    if mode == "transpose":
        return keras.layers.Conv2DTranspose(filters, kernel, strides=stride, padding="same",
                                            activation=activation,
                                            kernel_initializer=_kernel_init(), name=name)(x)
    if mode == "resize":
        x = keras.layers.UpSampling2D(stride, interpolation="nearest", name=f"{name}_resize")(x)
        return keras.layers.Conv2D(filters, kernel, padding="same", activation=activation,
                                   kernel_initializer=_kernel_init(), name=name)(x)
    x = keras.layers.Conv2D(filters * stride[0] * stride[1], _sub_kernel(kernel, stride),
                            padding="same", activation=activation,
                            kernel_initializer=_kernel_init(), name=name)(x)
    return DepthToSpace(stride, name=f"{name}_d2s")(x)


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
                  embedding_dim: int, downsampling: str = "strided",
                  name: str = "encoder") -> keras.Model:
    """Images ``(b, *input_shape)`` -> continuous latents ``(b, h, w, embedding_dim)``.

    Parameters
    ----------
    input_shape : (height, width, channels)
        Time-first spectrogram image ``(frames, bins, 1)`` or an image shape.
    strides : list of (time, freq)
        One 4x4 strided convolution (with ReLU) per entry.
    downsampling : {"strided", "space_to_depth"}
        How each stride is taken (see the module docstring).
    """
    _check_choice("downsampling", downsampling, DOWNSAMPLING)
    inputs = keras.Input(tuple(input_shape), name="images")
    x = inputs
    for i, stride in enumerate(strides):
        x = downsample(x, num_hiddens, stride, downsampling, name=f"down_{i}")
    x = residual_stack(x, num_hiddens=num_hiddens, num_residual_layers=num_residual_layers,
                       num_residual_hiddens=num_residual_hiddens, name="res")
    x = keras.layers.Conv2D(embedding_dim, 1, kernel_initializer=_kernel_init(), name="to_latent")(x)
    return keras.Model(inputs, x, name=name)


def build_decoder(latent_shape: Sequence[int], output_channels: int, *, num_hiddens: int,
                  num_residual_layers: int, num_residual_hiddens: int,
                  strides: Sequence[Sequence[int]], output_activation: str = "linear",
                  upsampling: str = "transpose", name: str = "decoder") -> keras.Model:
    """Latents ``(b, h, w, D)`` -> images ``(b, h * prod(time strides), w * prod(freq strides), C)``.

    3x3 conv, residual stack, then one 4x4 transposed convolution per stride
    (ReLU, the last one linear) followed by ``output_activation``; with
    ``upsampling="subpixel"`` or ``"resize"`` the transposed convolutions are
    replaced (see the module docstring).
    """
    _check_choice("upsampling", upsampling, UPSAMPLING)
    inputs = keras.Input(tuple(latent_shape), name="latents")
    x = keras.layers.Conv2D(num_hiddens, 3, padding="same", kernel_initializer=_kernel_init(),
                            name="from_latent")(inputs)
    x = residual_stack(x, num_hiddens=num_hiddens, num_residual_layers=num_residual_layers,
                       num_residual_hiddens=num_residual_hiddens, name="res")
    reversed_strides = list(strides)[::-1]
    for i, stride in enumerate(reversed_strides):
        last = i == len(reversed_strides) - 1
        x = upsample(x, output_channels if last else num_hiddens, stride, upsampling,
                     activation=None if last else "relu", name=f"up_{i}")
    # float32 output even under mixed precision: the loss compares with [0, 1] images.
    x = keras.layers.Activation(output_activation, dtype="float32", name="output")(x)
    return keras.Model(inputs, x, name=name)
