"""`FiniteScalarQuantizer` (FSQ, Mentzer et al. 2023): round each dimension to a few levels.

No codebook, no auxiliary loss: dimension ``i`` is squashed by a shifted
``tanh`` into ``levels[i]`` integer values, rounded with a straight-through
gradient and rescaled into ``[-1, 1]``. The implicit codebook is the product
grid, ``prod(levels)`` codes; the index of a vector is its mixed-radix number.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from vqkeras.layers.quantizer_base import BaseQuantizer, check_int, check_vector_size, checked_vectors

_EPS = 1e-3  # widens the tanh range a little so the outermost levels are reachable


@keras.saving.register_keras_serializable(package="vqkeras")
class FiniteScalarQuantizer(BaseQuantizer):
    """Quantise each of the last axis's dimensions to a fixed number of levels.

    Args:
        levels: Levels per dimension, each >= 2; the input's last axis has
            ``len(levels)`` entries. ``[8, 5, 5, 5]`` gives 1000 codes
            (Mentzer et al.'s recommended sets are in their Table 1).
        **kwargs: Base `keras.layers.Layer` arguments.

    Input shape:
        ``(..., len(levels))``, float.

    Output shape:
        Same as the input; values on the grid ``(k - levels[i] // 2) /
        (levels[i] // 2)``, straight-through gradient.

    Raises:
        ValueError: Bad ``levels`` or an input whose last axis is not ``len(levels)``.

    Example:

    >>> fsq = FiniteScalarQuantizer([8, 5, 5, 5])
    >>> fsq.codebook_size, round(fsq.bits_per_vector, 2)
    (1000, 9.97)
    """

    def __init__(self, levels, **kwargs):
        try:
            levels = [int(v) for v in levels]
        except (TypeError, ValueError):
            raise ValueError(f"`levels` must be a list of integers >= 2. Received: levels={levels!r}") from None
        if not levels or min(levels) < 2:
            raise ValueError(f"`levels` must be a non-empty list of integers >= 2. Received: levels={levels}")
        super().__init__(**kwargs)
        self.levels = levels
        self.embedding_dim = len(levels)
        # Mixed-radix place values of the index digits.
        self._basis = np.cumprod([1] + levels[:-1]).astype("int64")
        if math.prod(levels) > 2**31 - 1:
            raise ValueError(f"`levels` give more than 2**31 - 1 codes, too many for int32 indices. "
                             f"Received: levels={levels}")

    def build(self, input_shape):
        check_vector_size(self, input_shape, "FiniteScalarQuantizer", "len(levels)")
        self._build_statistics()
        self.built = True

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    # ------------------------------------------------------------ internals
    def _check(self, x, who):
        return checked_vectors(self, x, who, "len(levels)")

    def _constants(self):
        """``(half_l, offset, shift, half_width)`` as float32 tensors (computed in numpy once).

        Why tensors: a numpy array on the left of an op with a tensor (``ndarray
        * Tensor``) makes numpy convert the tensor, and on torch a tensor that
        requires grad refuses ``.numpy()`` inside `fit`.
        """
        levels = np.asarray(self.levels, "float32")
        half_l = (levels - 1.0) * (1.0 + _EPS) / 2.0
        offset = np.where(levels % 2 == 0, 0.5, 0.0).astype("float32")
        shift = np.arctanh(offset / half_l).astype("float32")
        half_width = np.asarray([v // 2 for v in self.levels], "float32")
        return tuple(ops.convert_to_tensor(c, dtype="float32") for c in (half_l, offset, shift, half_width))

    def _integer_grid(self, z):
        """Bounded, rounded values in ``[-(L//2), (L-1)//2 ... ]`` (float32, straight-through)."""
        half_l, offset, shift, _ = self._constants()
        bounded = ops.tanh(ops.cast(z, "float32") + shift) * half_l - offset
        return bounded + ops.stop_gradient(ops.round(bounded) - bounded)

    @property
    def _half_width(self):
        return self._constants()[3]

    def _basis_tensor(self):
        return ops.convert_to_tensor(self._basis.astype("int32"), dtype="int32")

    def _digits_to_index(self, grid):
        """Mixed-radix index (int32) of a float32 integer grid; exact for any int32 code count."""
        digits = ops.cast(ops.round(grid) + self._half_width, "int32")
        return ops.sum(digits * self._basis_tensor(), axis=-1)

    # ------------------------------------------------------------ interface
    def encode(self, x):
        """Mixed-radix indices of the grid points.

        Parameters
        ----------
        x : tensor [shape=(..., len(levels)), float]
            float16/bfloat16 inputs are cast to float32 first.

        Returns
        -------
        tensor [shape=x.shape[:-1], int32], in ``[0, prod(levels))``
        """
        x = self._check(x, "FiniteScalarQuantizer.encode")
        return self._digits_to_index(self._integer_grid(x))

    def decode(self, indices):
        """Grid vectors of integer indices.

        Parameters
        ----------
        indices : tensor [shape=(...), int]

        Returns
        -------
        tensor [shape=indices.shape + (len(levels),), compute dtype] (float32
        unless the layer runs under a mixed policy, like `call`)
        """
        indices = ops.convert_to_tensor(indices)
        check_int(indices, "FiniteScalarQuantizer.decode")
        indices = ops.cast(indices, "int32")[..., None]
        levels = ops.convert_to_tensor(np.asarray(self.levels, "int32"), dtype="int32")
        # Integer digits, then float32: bfloat16 could not hold an index >= 257.
        digits = ops.cast((indices // self._basis_tensor()) % levels, "float32")
        half_width = self._half_width
        return self._output((digits - half_width) / half_width)

    def call(self, inputs, training=None):
        z = self._check(inputs, "FiniteScalarQuantizer")
        grid = self._integer_grid(z)
        quantized = grid / self._half_width
        idx = self._digits_to_index(ops.stop_gradient(grid))
        self._record_statistics(idx, training)
        return self._output(quantized)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"levels": list(self.levels)})
        return config
