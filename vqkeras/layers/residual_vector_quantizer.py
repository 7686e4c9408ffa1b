"""`ResidualVectorQuantizer`: a stack of quantiser stages on the residual.

Stage ``i`` quantises what stages ``0..i-1`` left over, so the bit budget grows
by ``log2(codebook_size)`` per stage (SoundStream, Zeghidour et al. 2021).
Options: stages that share one codebook, grouped residual quantisation (the
last axis split into groups, each with its own residual stack; Yang et al.
2023, HiFi-Codec) and FSQ stages (residual FSQ: stage ``i`` sees the residual
scaled up by ``(levels - 1)**i``, so each stage refines the previous one's
grid cell).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from vqkeras.layers.finite_scalar_quantizer import FiniteScalarQuantizer
from vqkeras.layers.quantizer_base import LOW_PRECISION, BaseQuantizer, check_float, check_int, to_internal
from vqkeras.layers.vector_quantizer import VectorQuantizer


@keras.saving.register_keras_serializable(package="vqkeras")
class ResidualVectorQuantizer(BaseQuantizer):
    """Residual quantiser: the output is the sum of the stages' codes.

    Args:
        num_stages: Number of quantiser stages.
        num_embeddings: Codebook size of every VQ stage (ignored, may be
            ``None``, with ``stage="fsq"``: the size is ``prod(levels)``).
        embedding_dim: Vector size (the input's last axis).
        quantizer_dropout: Probability that a training batch uses only a random
            number ``1..num_stages`` of stages (the output sums only those), so
            a decoder learns to work at every bitrate. All stages still see
            their residual and keep learning.
        num_groups: Split the last axis into this many equal groups, each
            quantised by its own residual stack of ``embedding_dim //
            num_groups``-dimensional stages.
        shared_codebook: All stages of a group use one codebook (one
            `VectorQuantizer` called on every residual).
        stage: ``"vq"`` (`VectorQuantizer` stages) or ``"fsq"``
            (`FiniteScalarQuantizer` stages with ``levels``).
        levels: FSQ levels per dimension of a group (``stage="fsq"`` only).
        seed: Seed of the dropout draws (stage ``i`` gets ``seed + i + 1``).
        **kwargs: `VectorQuantizer` keyword arguments (``beta``, ``ema``,
            ``decay``, ``epsilon``, ``dead_code_threshold``, ``initializer``,
            ...), shared by all VQ stages, and base `keras.layers.Layer` arguments.

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

    _VQ_KWARGS = ("beta", "ema", "decay", "epsilon", "dead_code_threshold", "initializer", "distance",
                  "codebook_dim", "orthogonal_reg_weight", "gradient", "stochastic_temperature")

    def __init__(
        self,
        num_stages: int,
        num_embeddings: int | None,
        embedding_dim: int,
        *,
        quantizer_dropout: float = 0.0,
        num_groups: int = 1,
        shared_codebook: bool = False,
        stage: str = "vq",
        levels=None,
        seed: int | None = None,
        **kwargs,
    ):
        if not isinstance(num_stages, int) or num_stages < 1:
            raise ValueError(f"`num_stages` must be a positive integer. Received: num_stages={num_stages}")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"`quantizer_dropout` must be in [0, 1]. Received: quantizer_dropout={quantizer_dropout}")
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"`embedding_dim` must be a positive integer. Received: embedding_dim={embedding_dim}")
        if not isinstance(num_groups, int) or num_groups < 1 or embedding_dim % num_groups:
            raise ValueError(f"`num_groups` must be a positive integer that divides embedding_dim={embedding_dim}. "
                             f"Received: num_groups={num_groups}")
        if stage not in ("vq", "fsq"):
            raise ValueError(f"`stage` must be 'vq' or 'fsq'. Received: stage={stage!r}")
        vq_kwargs = {k: kwargs.pop(k) for k in self._VQ_KWARGS if k in kwargs}
        group_dim = embedding_dim // num_groups
        if stage == "fsq":
            if levels is None or len(levels) != group_dim:
                raise ValueError(f"stage='fsq' needs `levels` with one entry per group dimension "
                                 f"({group_dim}). Received: levels={levels}")
            if shared_codebook or vq_kwargs:
                raise ValueError("stage='fsq' has no codebook: `shared_codebook` and VectorQuantizer arguments "
                                 f"do not apply. Received: shared_codebook={shared_codebook}, {vq_kwargs}")
            num_embeddings = None
        elif levels is not None:
            raise ValueError(f"`levels` needs stage='fsq'. Received: stage={stage!r}, levels={levels}")
        super().__init__(**kwargs)
        self.num_stages = num_stages
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.quantizer_dropout = float(quantizer_dropout)
        self.num_groups = num_groups
        self.shared_codebook = bool(shared_codebook)
        self.stage = stage
        self.levels = None if levels is None else [int(v) for v in levels]
        self.seed = seed
        self.vq_kwargs = vq_kwargs
        # Built here (not in build) so a .keras reload finds them by path; the
        # plain layout (one group, own codebooks, VQ) keeps the names and order
        # of the shipped codec model.
        self.stages = []
        per_group = 1 if self.shared_codebook else num_stages
        # Under a mixed policy the stages run in float32 end to end: a stage
        # output rounded to bfloat16 would leave a wrong residual for the next
        # stage (codes unlike the float32 model's). The sum is cast once, at the end.
        stage_dtype = "float32" if self.compute_dtype in LOW_PRECISION else self.dtype_policy
        for g in range(num_groups):
            for i in range(per_group):
                name = f"{self.name}_stage{i}" if num_groups == 1 else f"{self.name}_g{g}_stage{i}"
                k = g * per_group + i
                if stage == "fsq":
                    self.stages.append(FiniteScalarQuantizer(self.levels, name=name, dtype=stage_dtype))
                else:
                    self.stages.append(VectorQuantizer(num_embeddings, group_dim,
                                                       seed=None if seed is None else seed + k + 1,
                                                       name=name, dtype=stage_dtype, **vq_kwargs))
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True  # VQ stages leave padding out of their statistics and losses

    _owns_metrics = False  # each stage logs its own perplexity and usage

    @property
    def codebook_size(self) -> int:
        return self.stages[0].codebook_size

    @property
    def codes_per_vector(self) -> int:
        return self.num_groups * self.num_stages

    @property
    def group_dim(self) -> int:
        return self.embedding_dim // self.num_groups

    def _stage(self, group: int, i: int):
        return self.stages[group if self.shared_codebook else group * self.num_stages + i]

    def _fsq_scale(self, i: int):
        """Residual FSQ: stage ``i`` works on the residual times ``(levels - 1)**i`` (a float32 tensor).

        A tensor, not a numpy array: ``ndarray * Tensor`` would make numpy call
        ``.numpy()`` on a torch tensor that requires grad.
        """
        return ops.convert_to_tensor((np.asarray(self.levels, "float32") - 1.0) ** i, dtype="float32")

    def build(self, input_shape):
        group_shape = tuple(input_shape[:-1]) + (self.group_dim,)
        for stage in self.stages:
            stage.build(group_shape)
        self.built = True

    def _check_stages(self, num_stages):
        if num_stages is None:
            return self.num_stages
        if not isinstance(num_stages, int) or not 1 <= num_stages <= self.num_stages:
            raise ValueError(f"`num_stages` must be an integer in [1, {self.num_stages}]. "
                             f"Received: num_stages={num_stages}")
        return num_stages

    def _split(self, x):
        if self.num_groups == 1:
            return [x]
        return ops.split(x, self.num_groups, axis=-1)

    def _quantize_stage(self, g, i, residual, training, mask=None):
        stage = self._stage(g, i)
        if self.stage == "fsq":
            scale = ops.cast(self._fsq_scale(i), residual.dtype)
            return ops.cast(stage(residual * scale, training=training), residual.dtype) / scale
        return ops.cast(stage(residual, training=training, mask=mask), residual.dtype)

    def call(self, inputs, training=None, num_stages=None, mask=None):
        check_float(inputs, "ResidualVectorQuantizer")
        if inputs.shape[-1] != self.embedding_dim:
            raise ValueError(f"ResidualVectorQuantizer expects the last axis to be embedding_dim="
                             f"{self.embedding_dim}. Received: input shape={tuple(inputs.shape)}")
        n = self._check_stages(num_stages)
        inputs = to_internal(inputs)
        active = None
        if training and self.quantizer_dropout > 0 and num_stages is None:
            # One draw per batch: with probability p keep 1..num_stages stages.
            u = keras.random.uniform((2,), seed=self.seed_generator)
            drawn = ops.floor(u[1] * self.num_stages) + 1.0
            active = ops.where(u[0] < self.quantizer_dropout, drawn, float(self.num_stages))
        outputs = []
        for g, group in enumerate(self._split(inputs)):
            residual = group
            output = ops.zeros_like(group)
            for i in range(n):
                quantized = self._quantize_stage(g, i, residual, training, mask)
                # Residuals carry no gradient: each stage's straight-through
                # output already passes the gradient to the input.
                residual = residual - ops.stop_gradient(quantized)
                if active is not None:
                    quantized = quantized * ops.cast(float(i) < active, quantized.dtype)
                output = output + quantized
            outputs.append(output)
        return self._output(outputs[0] if self.num_groups == 1 else ops.concatenate(outputs, axis=-1))

    def encode(self, x, num_stages: int | None = None):
        """Codes of the first `num_stages` stages.

        Parameters
        ----------
        x : tensor [shape=(..., embedding_dim), float]
        num_stages : int, optional
            Defaults to all stages.

        Returns
        -------
        tensor [shape=x.shape[:-1] + (num_stages,), int32]; with ``num_groups
        > 1``, ``x.shape[:-1] + (num_groups, num_stages)``.
        """
        n = self._check_stages(num_stages)
        x = ops.convert_to_tensor(x)
        check_float(x, "ResidualVectorQuantizer.encode")
        if x.shape[-1] != self.embedding_dim:
            raise ValueError(f"ResidualVectorQuantizer.encode expects the last axis to be embedding_dim="
                             f"{self.embedding_dim}. Received: input shape={tuple(x.shape)}")
        if not self.built:
            self.build(x.shape)
        x = to_internal(x)
        groups = []
        for g, group in enumerate(self._split(x)):
            residual = group
            codes = []
            for i in range(n):
                stage = self._stage(g, i)
                if self.stage == "fsq":
                    scale = self._fsq_scale(i)
                    idx = stage.encode(residual * scale)
                    residual = residual - ops.cast(stage.decode(idx), residual.dtype) / scale
                else:
                    idx = stage.encode(residual)
                    residual = residual - ops.cast(stage.decode(idx), residual.dtype)
                codes.append(idx)
            groups.append(ops.stack(codes, axis=-1))
        return groups[0] if self.num_groups == 1 else ops.stack(groups, axis=-2)

    def decode(self, indices):
        """Sum of the first ``indices.shape[-1]`` stages' code vectors.

        Parameters
        ----------
        indices : tensor [shape=(..., n), int], ``n <= num_stages``; with
            ``num_groups > 1``, ``(..., num_groups, n)``.

        Returns
        -------
        tensor [shape=indices.shape[:-1] + (embedding_dim,), compute dtype]
        (groups: ``indices.shape[:-2] + (embedding_dim,)``); summed in float32
        under a mixed policy, then cast, like `call`.
        """
        indices = ops.convert_to_tensor(indices)
        check_int(indices, "ResidualVectorQuantizer.decode")
        n = indices.shape[-1]
        groups_ok = self.num_groups == 1 or (len(indices.shape) >= 2 and indices.shape[-2] == self.num_groups)
        if n is None or not 1 <= n <= self.num_stages or not groups_ok:
            expected = "(..., n)" if self.num_groups == 1 else f"(..., {self.num_groups}, n)"
            raise ValueError(f"ResidualVectorQuantizer.decode expects indices of shape {expected} with "
                             f"1 <= n <= {self.num_stages}. Received: indices shape={tuple(indices.shape)}")
        outputs = []
        for g in range(self.num_groups):
            codes = indices if self.num_groups == 1 else indices[..., g, :]
            output = None
            for i in range(n):
                vectors = self._stage(g, i).decode(codes[..., i])
                if self.stage == "fsq":
                    vectors = vectors / self._fsq_scale(i)
                output = vectors if output is None else output + vectors
            outputs.append(output)
        return self._output(outputs[0] if self.num_groups == 1 else ops.concatenate(outputs, axis=-1))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_stages": self.num_stages,
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "quantizer_dropout": self.quantizer_dropout,
            "num_groups": self.num_groups,
            "shared_codebook": self.shared_codebook,
            "stage": self.stage,
            "levels": self.levels,
            "seed": self.seed,
            **self.vq_kwargs,
        })
        return config
