"""`LookupFreeQuantizer` (LFQ, Yu et al. 2023, MAGVIT-v2): one bit per latent dimension.

Each dimension is replaced by its sign (``-1`` or ``+1``, times a scale) with a
straight-through gradient; the index is the binary number of the signs, so the
implicit codebook has ``2**dim`` codes and nothing is looked up. To keep the
codes in use, training adds an entropy penalty: low entropy of each vector's
soft code assignment (confident codes) and high entropy of the batch's mean
assignment (all codes used).

The soft assignment ``p(c | z) ∝ exp(-||z - c||² / T)`` over the binary codes
factorises into independent bits with ``p(bit_i = 1) = sigmoid(4 z_i s / T)``,
so the per-vector entropy is the exact sum of the bits' entropies. The batch
("codebook") entropy is computed per bit too (the entropy of each bit's mean
probability), which costs ``O(dim)`` instead of ``O(2**dim)`` per vector; it
is an upper bound of the exact joint entropy and pushes every bit to be used
half of the time.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from vqkeras.layers.quantizer_base import BaseQuantizer, check_int, check_vector_size, checked_vectors


def _binary_entropy(p):
    p = ops.clip(p, 1e-6, 1.0 - 1e-6)
    return -(p * ops.log(p) + (1.0 - p) * ops.log(1.0 - p))


@keras.saving.register_keras_serializable(package="vqkeras")
class LookupFreeQuantizer(BaseQuantizer):
    """Binary latents: the sign of each dimension, index = the bits as a number.

    Args:
        embedding_dim: Bits per vector (the input's last axis); ``2**embedding_dim`` codes.
        entropy_weight: Weight of the entropy penalty ``mean_n H(p(.|z_n)) -
            diversity_gamma * H(mean_n p(.|z_n))`` added in training.
        diversity_gamma: Weight of the batch-entropy term inside the penalty.
        temperature: ``T`` of the soft assignment.
        beta: Commitment cost, ``beta * mean((z - sg(q))**2)`` (0 disables it).
        scale: The code values are ``±scale``.
        **kwargs: Base `keras.layers.Layer` arguments.

    Input shape:
        ``(..., embedding_dim)``, float.

    Output shape:
        Same as the input: ``±scale``, straight-through gradient.

    Raises:
        ValueError: A bad argument or input.

    Example:

    >>> lfq = LookupFreeQuantizer(10)
    >>> lfq.codebook_size, lfq.bits_per_vector
    (1024, 10.0)
    """

    def __init__(self, embedding_dim: int, *, entropy_weight: float = 0.1, diversity_gamma: float = 1.0,
                 temperature: float = 1.0, beta: float = 0.25, scale: float = 1.0, **kwargs):
        if not isinstance(embedding_dim, int) or not 1 <= embedding_dim <= 20:
            raise ValueError(f"`embedding_dim` must be an integer in [1, 20] "
                             "(bits per vector; its usage statistics count 2**bits codes). "
                             f"Received: embedding_dim={embedding_dim}")
        for name, value in (("entropy_weight", entropy_weight), ("diversity_gamma", diversity_gamma),
                            ("beta", beta)):
            if not value >= 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {name}={value}")
        for name, value in (("temperature", temperature), ("scale", scale)):
            if not value > 0:
                raise ValueError(f"`{name}` must be > 0. Received: {name}={value}")
        super().__init__(**kwargs)
        self.embedding_dim = embedding_dim
        self.entropy_weight = float(entropy_weight)
        self.diversity_gamma = float(diversity_gamma)
        self.temperature = float(temperature)
        self.beta = float(beta)
        self.scale = float(scale)
        self._basis = (2 ** np.arange(embedding_dim)).astype("int32")

    def build(self, input_shape):
        check_vector_size(self, input_shape, "LookupFreeQuantizer", "embedding_dim")
        self._build_statistics()
        self.built = True

    @property
    def codebook_size(self) -> int:
        return 2 ** self.embedding_dim

    def _check(self, x, who):
        return checked_vectors(self, x, who, "embedding_dim")

    def _indices(self, z):
        bits = ops.cast(z > 0, "int32")
        return ops.sum(bits * ops.convert_to_tensor(self._basis, dtype="int32"), axis=-1)

    def encode(self, x):
        """Indices: bit ``i`` is set where dimension ``i`` is positive.

        Parameters
        ----------
        x : tensor [shape=(..., embedding_dim), float]

        Returns
        -------
        tensor [shape=x.shape[:-1], int32]
        """
        return self._indices(self._check(x, "LookupFreeQuantizer.encode"))

    def decode(self, indices):
        """``±scale`` vectors of integer indices.

        Parameters
        ----------
        indices : tensor [shape=(...), int]

        Returns
        -------
        tensor [shape=indices.shape + (embedding_dim,), compute dtype] (float32
        unless the layer runs under a mixed policy, like `call`)
        """
        indices = ops.convert_to_tensor(indices)
        check_int(indices, "LookupFreeQuantizer.decode")
        bits = (ops.cast(indices, "int32")[..., None] // ops.convert_to_tensor(self._basis, dtype="int32")) % 2
        return self._output((ops.cast(bits, "float32") * 2.0 - 1.0) * self.scale)

    def call(self, inputs, training=None):
        # float32 signs and entropies even under a mixed policy (see quantizer_base).
        z = ops.cast(self._check(inputs, "LookupFreeQuantizer"), "float32")
        q = ops.where(z > 0, self.scale, -self.scale)
        sg = ops.stop_gradient
        if training:
            flat = ops.reshape(z, (-1, self.embedding_dim))
            p_one = ops.sigmoid(4.0 * self.scale * flat / self.temperature)
            per_vector = ops.mean(ops.sum(_binary_entropy(p_one), axis=-1))
            batch = ops.sum(_binary_entropy(ops.mean(p_one, axis=0)))
            loss = self.entropy_weight * (per_vector - self.diversity_gamma * batch)
            if self.beta:
                loss = loss + self.beta * ops.mean(ops.square(z - sg(q)))
            self.add_loss(loss)
        self._record_statistics(self._indices(z), training)
        return self._output(z + sg(q - z))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"embedding_dim": self.embedding_dim, "entropy_weight": self.entropy_weight,
                       "diversity_gamma": self.diversity_gamma, "temperature": self.temperature,
                       "beta": self.beta, "scale": self.scale})
        return config
