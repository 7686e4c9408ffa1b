"""`VQVAE` and `Autoencoder`: the thesis models as serializable Keras models.

Both take time-first spectrogram images ``(frames, bins, 1)`` (or image data
such as ``(28, 28, 1)``) in [0, 1] and return a reconstruction of the same
shape. The output is linear by default, as in the thesis (clip it to [0, 1]
for metrics; `compile_model`'s metrics do). `VQVAE` quantizes the latent grid with a `VectorQuantizer` (or a
`ResidualVectorQuantizer`), `Autoencoder` keeps it continuous (the thesis
baseline).

>>> model = VQVAE((64, 32, 1), num_hiddens=16, embedding_dim=8, num_embeddings=32)
>>> model.latent_shape
(16, 8)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from vqkeras.experiments.models.blocks import build_decoder, build_encoder
from vqkeras.keras_setup import portable_compile_config

__all__ = ["Autoencoder", "VQVAE", "clipped_mean_squared_error", "clipped_sum_squared_error",
           "compile_model", "sum_squared_error"]


@keras.saving.register_keras_serializable(package="vqkeras")
def sum_squared_error(y_true, y_pred):
    """Per-example sum of squared errors (what the thesis called "MSE")."""
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    squared = keras.ops.square(y_pred - y_true)
    return keras.ops.sum(keras.ops.reshape(squared, (keras.ops.shape(squared)[0], -1)), axis=-1)


@keras.saving.register_keras_serializable(package="vqkeras")
def clipped_sum_squared_error(y_true, y_pred):
    """`sum_squared_error` of the output clipped to [0, 1], the range of the data."""
    return sum_squared_error(y_true, keras.ops.clip(y_pred, 0.0, 1.0))


@keras.saving.register_keras_serializable(package="vqkeras")
def clipped_mean_squared_error(y_true, y_pred):
    """Per-example mean squared error of the output clipped to [0, 1]."""
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    squared = keras.ops.square(keras.ops.clip(y_pred, 0.0, 1.0) - y_true)
    return keras.ops.mean(keras.ops.reshape(squared, (keras.ops.shape(squared)[0], -1)), axis=-1)


def _check_strides(strides: Sequence[Sequence[int]]) -> list[list[int]]:
    strides = [[int(s) for s in pair] for pair in strides]
    if not strides or any(len(p) != 2 or min(p) < 1 for p in strides):
        raise ValueError(f"strides must be a non-empty list of positive [time, freq] pairs. "
                         f"Received: strides={strides}")
    return strides


class _ConvAutoencoder(keras.Model):
    """Shared encoder/decoder plumbing of `VQVAE` and `Autoencoder`."""

    def __init__(self, image_shape: Sequence[int], *, num_hiddens: int, num_residual_layers: int,
                 num_residual_hiddens: int, strides: Sequence[Sequence[int]], embedding_dim: int,
                 output_activation: str, upsampling: str = "transpose",
                 downsampling: str = "strided", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (height, width, channels). "
                             f"Received: image_shape={image_shape}")
        strides = _check_strides(strides)
        time_stride = math.prod(p[0] for p in strides)
        freq_stride = math.prod(p[1] for p in strides)
        if image_shape[0] % time_stride or image_shape[1] % freq_stride:
            raise ValueError(f"image_shape {image_shape[:2]} must be divisible by the total strides "
                             f"({time_stride}, {freq_stride}). Received: strides={strides}")
        if output_activation not in ("sigmoid", "linear"):
            raise ValueError(f"output_activation must be 'sigmoid' or 'linear'. "
                             f"Received: output_activation={output_activation!r}")
        for arg, value in (("num_hiddens", num_hiddens), ("num_residual_hiddens", num_residual_hiddens),
                           ("embedding_dim", embedding_dim)):
            if int(value) < 1:
                raise ValueError(f"{arg} must be a positive integer. Received: {arg}={value}")
        self.image_shape = image_shape
        self.num_hiddens = int(num_hiddens)
        self.num_residual_layers = int(num_residual_layers)
        self.num_residual_hiddens = int(num_residual_hiddens)
        self.strides = strides
        self.embedding_dim = int(embedding_dim)
        self.output_activation = output_activation
        # Models saved before these options existed have no such keys: the defaults
        # are the original layers, so they load and compute exactly as before.
        self.upsampling = upsampling
        self.downsampling = downsampling
        self.latent_shape = (image_shape[0] // time_stride, image_shape[1] // freq_stride)
        common = dict(num_hiddens=self.num_hiddens, num_residual_layers=self.num_residual_layers,
                      num_residual_hiddens=self.num_residual_hiddens, strides=strides)
        self.encoder = build_encoder(image_shape, embedding_dim=self.embedding_dim,
                                     downsampling=downsampling, **common)
        self.decoder = build_decoder((*self.latent_shape, self.embedding_dim), image_shape[-1],
                                     output_activation=output_activation, upsampling=upsampling,
                                     **common)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "trainable": self.trainable,
                "image_shape": list(self.image_shape), "num_hiddens": self.num_hiddens,
                "num_residual_layers": self.num_residual_layers,
                "num_residual_hiddens": self.num_residual_hiddens,
                "strides": [list(p) for p in self.strides], "embedding_dim": self.embedding_dim,
                "output_activation": self.output_activation, "upsampling": self.upsampling,
                "downsampling": self.downsampling}

    def get_compile_config(self) -> dict[str, Any]:
        # A torch-saved model must load compiled on JAX and TensorFlow too.
        return portable_compile_config(super().get_compile_config())

    def build(self, input_shape=None) -> None:
        # All sublayers are built in __init__; nothing depends on the batch size.
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    @staticmethod
    def _batched(fn, array: np.ndarray, batch_size: int) -> np.ndarray:
        """Apply `fn` in batches (bounded memory), numpy in, numpy out."""
        outputs = [keras.ops.convert_to_numpy(fn(array[i:i + batch_size]))
                   for i in range(0, len(array), batch_size)]
        return np.concatenate(outputs, axis=0)


@keras.saving.register_keras_serializable(package="vqkeras")
class VQVAE(_ConvAutoencoder):
    """Vector-quantised autoencoder (van den Oord et al. 2017), thesis layout.

    Parameters
    ----------
    image_shape : (height, width, channels)
        Input shape without the batch axis: ``(frames, bins, 1)`` for spectrograms.
    num_hiddens : int
        Channels of the convolutions (thesis ``n_units``).
    num_residual_layers, num_residual_hiddens : int
        Residual blocks and their 3x3-conv width.
    strides : list of (time, freq)
        One 4x4 strided convolution per entry (thesis ``[[2, 2], [2, 2]]``).
    embedding_dim, num_embeddings : int
        Code vector size D and codebook size K.
    quantizer : {"vq", "rvq", "fsq", "lfq"}
        One `VectorQuantizer`, a `ResidualVectorQuantizer` of ``num_stages``,
        a `FiniteScalarQuantizer` (residual FSQ stages when ``num_stages >
        1``) or a `LookupFreeQuantizer` (``embedding_dim`` bits).
    num_stages, quantizer_dropout
        Residual quantizer stages and their training-time dropout.
    levels : list of int
        FSQ levels per latent dimension (``len(levels) == embedding_dim``).
    entropy_weight : float
        LFQ entropy penalty weight.
    ema, decay, beta, dead_code_threshold, initializer
        Passed to the quantizer (EMA codebook updates, commitment cost...).
    output_activation : {"linear", "sigmoid"}
        Linear (default, the thesis). A sigmoid keeps outputs in [0, 1] but,
        with many exact-zero pixels, can saturate and collapse training.
    upsampling : {"transpose", "subpixel", "resize"}
        Decoder resampling: 4x4 transposed convolutions (thesis, default), sub-pixel
        convolutions (same parameters; several times faster to train on JAX/CPU),
        or nearest-neighbour resize then a 4x4 convolution.
    downsampling : {"strided", "space_to_depth"}
        Encoder resampling: 4x4 strided convolutions (thesis, default), or
        space-to-depth then a stride-1 convolution (same parameters; faster on JAX/CPU).

    Input shape: ``(batch, *image_shape)``. Output shape: the same.
    Attributes: ``encoder``, ``quantizer``, ``decoder`` (sub-models/layers), ``latent_shape``.
    """

    def __init__(self, image_shape: Sequence[int], *, num_hiddens: int = 128,
                 num_residual_layers: int = 2, num_residual_hiddens: int = 32,
                 strides: Sequence[Sequence[int]] = ((2, 2), (2, 2)), embedding_dim: int = 64,
                 num_embeddings: int = 512, quantizer: str = "vq", num_stages: int = 1,
                 quantizer_dropout: float = 0.0, ema: bool = True, decay: float = 0.99,
                 beta: float = 0.25, dead_code_threshold: int = 0,
                 initializer: str = "random_normal", output_activation: str = "linear",
                 levels: Sequence[int] | None = None, entropy_weight: float = 0.1,
                 upsampling: str = "transpose", downsampling: str = "strided",
                 name: str = "vqvae", **kwargs: Any) -> None:
        super().__init__(image_shape, num_hiddens=num_hiddens, num_residual_layers=num_residual_layers,
                         num_residual_hiddens=num_residual_hiddens, strides=strides,
                         embedding_dim=embedding_dim, output_activation=output_activation,
                         upsampling=upsampling, downsampling=downsampling, name=name, **kwargs)
        if quantizer not in ("vq", "rvq", "fsq", "lfq"):
            raise ValueError(f"quantizer must be 'vq', 'rvq', 'fsq' or 'lfq'. Received: quantizer={quantizer!r}")
        if quantizer in ("vq", "lfq") and int(num_stages) != 1:
            raise ValueError(f"num_stages must be 1 with quantizer={quantizer!r}. Received: num_stages={num_stages}")
        if quantizer == "fsq" and (levels is None or len(levels) != embedding_dim):
            raise ValueError(f"quantizer='fsq' needs one level per latent dimension (embedding_dim="
                             f"{embedding_dim}). Received: levels={levels}")
        self.levels = None if levels is None else [int(v) for v in levels]
        self.entropy_weight = float(entropy_weight)
        # One index per latent vector, or one per residual stage (last axis).
        self._single_index = quantizer in ("vq", "lfq") or (quantizer == "fsq" and int(num_stages) == 1)
        self.num_embeddings = int(num_embeddings)
        self.quantizer_kind = quantizer
        self.num_stages = int(num_stages)
        self.quantizer_dropout = float(quantizer_dropout)
        self.ema = bool(ema)
        self.decay = float(decay)
        self.beta = float(beta)
        self.dead_code_threshold = int(dead_code_threshold)
        self.initializer = initializer
        vq_kwargs = dict(beta=self.beta, ema=self.ema, decay=self.decay,
                         dead_code_threshold=self.dead_code_threshold, initializer=initializer)
        if quantizer == "vq":
            from vqkeras.layers import VectorQuantizer

            self.quantizer = VectorQuantizer(self.num_embeddings, self.embedding_dim, name="vq",
                                             **vq_kwargs)
        elif quantizer == "lfq":
            from vqkeras.layers import LookupFreeQuantizer

            self.quantizer = LookupFreeQuantizer(self.embedding_dim, entropy_weight=self.entropy_weight,
                                                 beta=self.beta, name="lfq")
        elif quantizer == "fsq" and self.num_stages == 1:
            from vqkeras.layers import FiniteScalarQuantizer

            self.quantizer = FiniteScalarQuantizer(self.levels, name="fsq")
        elif quantizer == "fsq":
            from vqkeras.layers import ResidualVectorQuantizer

            self.quantizer = ResidualVectorQuantizer(self.num_stages, None, self.embedding_dim, stage="fsq",
                                                     levels=self.levels, name="rfsq",
                                                     quantizer_dropout=self.quantizer_dropout)
        else:
            from vqkeras.layers import ResidualVectorQuantizer

            self.quantizer = ResidualVectorQuantizer(self.num_stages, self.num_embeddings,
                                                     self.embedding_dim, name="rvq",
                                                     quantizer_dropout=self.quantizer_dropout,
                                                     **vq_kwargs)
        self.quantizer.build((None, *self.latent_shape, self.embedding_dim))
        self.built = True

    def compute_loss(self, *args, **kwargs):
        # On JAX the quantizer cannot update its perplexity/usage metrics from
        # call(); the model pushes them here (see vqkeras.layers.vector_quantizer).
        from vqkeras.layers.vector_quantizer import update_quantizer_metrics

        update_quantizer_metrics(self)
        return super().compute_loss(*args, **kwargs)

    def call(self, images, training=None):
        latents = self.encoder(images, training=training)
        quantized = self.quantizer(latents, training=training)
        return self.decoder(quantized, training=training)

    def encode(self, images, num_stages: int | None = None, *, batch_size: int = 32) -> np.ndarray:
        """Code indices of images.

        Parameters
        ----------
        images : array [shape=(batch, *image_shape)]
        num_stages : int, optional
            Residual quantizer only: keep the first ``num_stages`` stages.

        Returns
        -------
        np.ndarray, int32 [shape=(batch, h, w)] for "vq", ``(batch, h, w, stages)`` for "rvq".
        """
        images = np.asarray(images, dtype="float32")
        if self._single_index:
            if num_stages not in (None, 1):
                raise ValueError(f"num_stages must be None or 1 for a single-stage quantizer. "
                                 f"Received: num_stages={num_stages}")
            fn = lambda x: self.quantizer.encode(self.encoder(x, training=False))  # noqa: E731
        else:
            if num_stages is not None and not 1 <= int(num_stages) <= self.num_stages:
                raise ValueError(f"num_stages must be in [1, {self.num_stages}]. "
                                 f"Received: num_stages={num_stages}")
            fn = lambda x: self.quantizer.encode(self.encoder(x, training=False),  # noqa: E731
                                                 num_stages=num_stages)
        return self._batched(fn, images, batch_size).astype("int32")

    def decode_indices(self, indices, *, batch_size: int = 32) -> np.ndarray:
        """Images from code indices (the output of `encode`), float32 numpy."""
        indices = np.asarray(indices, dtype="int32")
        expected = 3 if self._single_index else 4
        if indices.ndim != expected or tuple(indices.shape[1:3]) != tuple(self.latent_shape):
            raise ValueError(f"indices must have shape (batch, {self.latent_shape[0]}, "
                             f"{self.latent_shape[1]}{', stages' if expected == 4 else ''}). "
                             f"Received: indices.shape={indices.shape}")
        fn = lambda i: self.decoder(self.quantizer.decode(i), training=False)  # noqa: E731
        return self._batched(fn, indices, batch_size).astype("float32")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_embeddings": self.num_embeddings,
                "quantizer": self.quantizer_kind, "num_stages": self.num_stages,
                "quantizer_dropout": self.quantizer_dropout, "ema": self.ema, "decay": self.decay,
                "beta": self.beta, "dead_code_threshold": self.dead_code_threshold,
                "initializer": self.initializer, "levels": self.levels, "entropy_weight": self.entropy_weight}


@keras.saving.register_keras_serializable(package="vqkeras")
class Autoencoder(_ConvAutoencoder):
    """The thesis baseline: the same encoder/decoder with a continuous latent of D channels.

    Parameters are those of `VQVAE` without the quantizer's. `compile_model`
    trains it on the same loss unit as the VQ-VAE (per-pixel MSE), so their
    curves share an axis; the thesis's per-spectrogram SSE is logged as ``sse``.
    """

    def __init__(self, image_shape: Sequence[int], *, num_hiddens: int = 128,
                 num_residual_layers: int = 2, num_residual_hiddens: int = 32,
                 strides: Sequence[Sequence[int]] = ((2, 2), (2, 2)), embedding_dim: int = 4,
                 output_activation: str = "linear", upsampling: str = "transpose",
                 downsampling: str = "strided", name: str = "autoencoder",
                 **kwargs: Any) -> None:
        super().__init__(image_shape, num_hiddens=num_hiddens, num_residual_layers=num_residual_layers,
                         num_residual_hiddens=num_residual_hiddens, strides=strides,
                         embedding_dim=embedding_dim, output_activation=output_activation,
                         upsampling=upsampling, downsampling=downsampling, name=name, **kwargs)
        self.built = True

    def call(self, images, training=None):
        return self.decoder(self.encoder(images, training=training), training=training)

    def encode(self, images, *, batch_size: int = 32) -> np.ndarray:
        """Continuous latents, float32 ``(batch, h, w, D)``."""
        fn = lambda x: self.encoder(x, training=False)  # noqa: E731
        return self._batched(fn, np.asarray(images, dtype="float32"), batch_size).astype("float32")

    def decode(self, latents, *, batch_size: int = 32) -> np.ndarray:
        """Images from latents ``(batch, h, w, D)``."""
        fn = lambda z: self.decoder(z, training=False)  # noqa: E731
        return self._batched(fn, np.asarray(latents, dtype="float32"), batch_size).astype("float32")


# A cosine schedule ends at this fraction of the initial learning rate.
COSINE_FLOOR = 0.05


def compile_model(model: VQVAE | Autoencoder, *, learning_rate: float = 2e-4,
                  schedule: str = "constant", total_steps: int | None = None) -> None:
    """Compile with Adam on the per-pixel MSE (+ the quantizer's losses for a VQ-VAE).

    Every model kind uses the same loss unit. Logged metrics: ``loss``, and on
    the output clipped to [0, 1] (the data's range) ``mse`` (per pixel) and
    ``sse`` (per example: the thesis's "MSE"), plus the quantizer's perplexity
    and usage.

    Parameters
    ----------
    model : VQVAE or Autoencoder
        The model to compile.
    learning_rate : float
        Adam's (initial) learning rate.
    schedule : {"constant", "cosine"}
        ``"cosine"`` decays the rate to ``COSINE_FLOOR`` of ``learning_rate``
        over ``total_steps`` optimizer steps (then holds it).
    total_steps : int, optional
        Steps of the whole run; required for ``"cosine"``.

    A model built under the ``mixed_float16`` policy gets Adam wrapped in
    `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling).
    """
    if schedule == "cosine":
        if not total_steps or total_steps < 1:
            raise ValueError("a cosine learning-rate schedule needs total_steps >= 1")
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, int(total_steps),
                                                      alpha=COSINE_FLOOR)
    elif schedule == "constant":
        rate = learning_rate
    else:
        raise ValueError(f"unknown learning-rate schedule {schedule!r} (constant or cosine)")
    metrics = [keras.metrics.MeanMetricWrapper(clipped_mean_squared_error, name="mse"),
               keras.metrics.MeanMetricWrapper(clipped_sum_squared_error, name="sse")]
    optimizer = keras.optimizers.Adam(rate)
    if model.dtype_policy.name == "mixed_float16":
        # float16 gradients underflow without loss scaling (bfloat16 has
        # float32's exponent range and needs none).
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(optimizer=optimizer, loss=keras.losses.MeanSquaredError(), metrics=metrics)
