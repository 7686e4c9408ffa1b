"""`ResidualVectorQuantizer`: a stack of `VectorQuantizer` stages on the residual.

Stage ``i`` quantises what stages ``0..i-1`` left over, so the bit budget grows
by ``log2(num_embeddings)`` per stage (SoundStream, Zeghidour et al. 2021).
"""

from __future__ import annotations

import keras
from keras import ops

from vqkeras.layers.vector_quantizer import VectorQuantizer, _check_float


@keras.saving.register_keras_serializable(package="vqkeras")
class ResidualVectorQuantizer(keras.layers.Layer):
    """Residual vector quantiser: the output is the sum of the stages' codes.

    Args:
        num_stages: Number of `VectorQuantizer` stages.
        num_embeddings: Codebook size of every stage.
        embedding_dim: Vector size (the input's last axis).
        quantizer_dropout: Probability that a training batch uses only a random
            number ``1..num_stages`` of stages (the output sums only those), so
            a decoder learns to work at every bitrate. All stages still see
            their residual and keep learning.
        seed: Seed of the dropout draws (stage ``i`` gets ``seed + i + 1``).
        **kwargs: `VectorQuantizer` keyword arguments (``beta``, ``ema``,
            ``decay``, ``epsilon``, ``dead_code_threshold``, ``initializer``),
            shared by all stages, and base `keras.layers.Layer` arguments.

    Input shape:
        ``(..., embedding_dim)``, float.

    Output shape:
        Same as the input.

    Raises:
        ValueError: A bad argument or input (see `VectorQuantizer`).

    Example:

    >>> rvq = ResidualVectorQuantizer(4, 256, 8)
    >>> z = np.random.normal(size=(2, 10, 8)).astype("float32")
    >>> rvq.encode(z).shape, rvq.decode(rvq.encode(z, num_stages=2)).shape
    ((2, 10, 4), (2, 10, 8))
    """

    _VQ_KWARGS = ("beta", "ema", "decay", "epsilon", "dead_code_threshold", "initializer")

    def __init__(
        self,
        num_stages: int,
        num_embeddings: int,
        embedding_dim: int,
        *,
        quantizer_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        if not isinstance(num_stages, int) or num_stages < 1:
            raise ValueError(f"`num_stages` must be a positive integer. Received: num_stages={num_stages}")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"`quantizer_dropout` must be in [0, 1]. Received: quantizer_dropout={quantizer_dropout}")
        vq_kwargs = {k: kwargs.pop(k) for k in self._VQ_KWARGS if k in kwargs}
        super().__init__(**kwargs)
        self.num_stages = num_stages
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.quantizer_dropout = float(quantizer_dropout)
        self.seed = seed
        self.vq_kwargs = vq_kwargs
        # Built here (not in build) so a .keras reload finds them by path.
        self.stages = [
            VectorQuantizer(num_embeddings, embedding_dim, seed=None if seed is None else seed + i + 1,
                            name=f"{self.name}_stage{i}", **vq_kwargs)
            for i in range(num_stages)
        ]
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        for stage in self.stages:
            stage.build(input_shape)
        self.built = True

    def _check_stages(self, num_stages):
        if num_stages is None:
            return self.num_stages
        if not isinstance(num_stages, int) or not 1 <= num_stages <= self.num_stages:
            raise ValueError(f"`num_stages` must be an integer in [1, {self.num_stages}]. "
                             f"Received: num_stages={num_stages}")
        return num_stages

    def call(self, inputs, training=None, num_stages=None):
        _check_float(inputs, "ResidualVectorQuantizer")
        n = self._check_stages(num_stages)
        active = None
        if training and self.quantizer_dropout > 0 and num_stages is None:
            # One draw per batch: with probability p keep 1..num_stages stages.
            u = keras.random.uniform((2,), seed=self.seed_generator)
            drawn = ops.floor(u[1] * self.num_stages) + 1.0
            active = ops.where(u[0] < self.quantizer_dropout, drawn, float(self.num_stages))
        residual = inputs
        output = ops.zeros_like(inputs)
        for i, stage in enumerate(self.stages[:n]):
            quantized = stage(residual, training=training)
            # Residuals carry no gradient: each stage's straight-through output
            # already passes the gradient to the input.
            residual = residual - ops.stop_gradient(quantized)
            if active is not None:
                quantized = quantized * ops.cast(float(i) < active, quantized.dtype)
            output = output + quantized
        return output

    def encode(self, x, num_stages: int | None = None):
        """Codes of the first `num_stages` stages.

        Parameters
        ----------
        x : tensor [shape=(..., embedding_dim), float]
        num_stages : int, optional
            Defaults to all stages.

        Returns
        -------
        tensor [shape=x.shape[:-1] + (num_stages,), int32]
        """
        n = self._check_stages(num_stages)
        residual = ops.convert_to_tensor(x)
        if not self.built:
            self.build(residual.shape)
        codes = []
        for stage in self.stages[:n]:
            idx = stage.encode(residual)
            residual = residual - ops.cast(stage.decode(idx), residual.dtype)
            codes.append(idx)
        return ops.stack(codes, axis=-1)

    def decode(self, indices):
        """Sum of the first ``indices.shape[-1]`` stages' codebook vectors.

        Parameters
        ----------
        indices : tensor [shape=(..., n), int], ``n <= num_stages``

        Returns
        -------
        tensor [shape=indices.shape[:-1] + (embedding_dim,), float]
        """
        indices = ops.convert_to_tensor(indices)
        n = indices.shape[-1]
        if n is None or not 1 <= n <= self.num_stages:
            raise ValueError(f"ResidualVectorQuantizer.decode expects indices of shape (..., n) with "
                             f"1 <= n <= {self.num_stages}. Received: indices shape={tuple(indices.shape)}")
        output = self.stages[0].decode(indices[..., 0])
        for i in range(1, n):
            output = output + self.stages[i].decode(indices[..., i])
        return output

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_stages": self.num_stages,
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "quantizer_dropout": self.quantizer_dropout,
            "seed": self.seed,
            **self.vq_kwargs,
        })
        return config
