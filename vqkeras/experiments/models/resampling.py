"""Space-to-depth and depth-to-space layers: strided resampling without strided convolutions.

XLA on CPU (the JAX backend) runs the gradients of strided and transposed
convolutions (convolutions with input dilation) 8-15x slower than TensorFlow's
oneDNN kernels (jax-ml/jax#23783, openxla/xla#34273). A 4x4 stride-2
convolution equals a space-to-depth rearrangement followed by a 2x2 stride-1
convolution on 4x the channels, and a 4x4 stride-2 transposed convolution
equals a 2x2 stride-1 convolution to 4x the channels followed by depth-to-space
("sub-pixel" convolution, Shi et al. 2016): the same parameter count and
receptive field, up to a half-pixel shift of the grid, with only stride-1
convolutions and reshapes, which XLA handles well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

__all__ = ["DepthToSpace", "SpaceToDepth"]


def _block(block_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(block_size, int):
        block_size = (block_size, block_size)
    block = tuple(int(b) for b in block_size)
    if len(block) != 2 or min(block) < 1:
        raise ValueError(f"`block_size` must be a positive int or a pair of them. "
                         f"Received: block_size={block_size}")
    return block


@keras.saving.register_keras_serializable(package="vqkeras")
class SpaceToDepth(keras.layers.Layer):
    """``(b, H, W, C)`` -> ``(b, H / bh, W / bw, bh * bw * C)``: each block becomes channels.

    Parameters
    ----------
    block_size : int or (int, int)
        Block height and width; `H` and `W` must be divisible by them.
    """

    def __init__(self, block_size: int | Sequence[int] = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.block_size = _block(block_size)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        bh, bw = self.block_size
        return (b, None if h is None else h // bh, None if w is None else w // bw,
                None if c is None else c * bh * bw)

    def call(self, inputs):
        _, h, w, c = inputs.shape
        bh, bw = self.block_size
        if h % bh or w % bw:
            raise ValueError(f"SpaceToDepth: spatial shape ({h}, {w}) must be divisible by "
                             f"block_size {self.block_size}")
        x = ops.reshape(inputs, (-1, h // bh, bh, w // bw, bw, c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, h // bh, w // bw, bh * bw * c))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "block_size": list(self.block_size)}


@keras.saving.register_keras_serializable(package="vqkeras")
class DepthToSpace(keras.layers.Layer):
    """``(b, H, W, bh * bw * C)`` -> ``(b, H * bh, W * bw, C)``: the inverse of `SpaceToDepth`.

    Parameters
    ----------
    block_size : int or (int, int)
        Block height and width; the channels must be divisible by their product.
    """

    def __init__(self, block_size: int | Sequence[int] = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.block_size = _block(block_size)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        bh, bw = self.block_size
        return (b, None if h is None else h * bh, None if w is None else w * bw,
                None if c is None else c // (bh * bw))

    def call(self, inputs):
        _, h, w, c = inputs.shape
        bh, bw = self.block_size
        if c % (bh * bw):
            raise ValueError(f"DepthToSpace: {c} channels are not divisible by "
                             f"block_size {self.block_size} ({bh * bw})")
        out_c = c // (bh * bw)
        x = ops.reshape(inputs, (-1, h, w, bh, bw, out_c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, h * bh, w * bw, out_c))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "block_size": list(self.block_size)}
