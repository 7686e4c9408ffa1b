"""What every vqkeras quantiser shares: the code interface and its fit-log metrics.

Interface. A quantiser maps float vectors on the last axis to integer codes and
back: ``encode(x) -> int32 indices``, ``decode(indices) -> vectors``, with
``layer(x) == decode(encode(x))`` at inference; ``codebook_size`` is the number
of distinct codes of one index and ``bits_per_vector`` the bits one latent
vector costs at a fixed code width.

Metrics. Each quantiser owns two `QuantizerStatistic` trackers,
``<name>_perplexity`` and ``<name>_usage`` (codebook perplexity and used
fraction of the codes, per batch, averaged over the epoch). Where they reach the
`fit` logs:

- TensorFlow: the layer updates them from ``call``; any model shows them.
- JAX (Keras 3.15): a layer's ``call`` runs inside `Model.stateless_call`, which
  returns only the model's non-trainable variables; a metric updated there is
  dropped (keras-team/keras#21639), and a metric variable that is also a layer
  weight is overwritten by the stale metric state in `stateless_compute_loss`.
  So the layer keeps its batch statistics in its own non-trainable variables
  and the *model* pushes them into the trackers from ``compute_loss``:
  `QuantizerMetricsModel`, `QuantizerMetricsSequential`, a model class with
  `QuantizerMetricsMixin`, or a ``compute_loss`` that calls
  `update_quantizer_metrics(self)`. In any other model the two metrics are
  absent from the logs (never a silent 0.0) and the first quantiser warns once,
  naming the fix.

Mixed precision. Under a ``mixed_float16`` / ``mixed_bfloat16`` policy a
quantiser's variables (codebook, EMA statistics, counters) are float32 and are
never autocast: distances, argmin, EMA updates, restarts and FSQ/LFQ index
arithmetic all run in float32 (bfloat16 cannot even hold the integer 257, and
float16 distances of unnormalised latents overflow). Low-precision inputs are
cast to float32 on entry (`BaseQuantizer.input_dtype`); ``encode`` returns
int32; ``call`` and ``decode`` return the layer's compute dtype, so
``layer(x) == decode(encode(x))`` still holds at inference. A float32 layer
computes exactly as before.
"""

from __future__ import annotations

import warnings

import keras
from keras import ops

from vqkeras.keras_setup import portable_compile_config

_JAX_HINT = ("On JAX, Keras cannot update a metric from a layer's call (keras-team/keras#21639), so the "
             "quantiser metrics (first: {names}) are left out of the logs. Fix: build the model as "
             "vqkeras.QuantizerMetricsModel (functional), vqkeras.QuantizerMetricsSequential, add "
             "vqkeras.QuantizerMetricsMixin to a subclassed model, or call "
             "vqkeras.update_quantizer_metrics(self) at the top of your compute_loss.")
_warned = False


def _warn_once(names: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(_JAX_HINT.format(names=names), stacklevel=3)


def _traced(value) -> bool:
    import jax

    return isinstance(value, jax.core.Tracer)


def check_float(x, who: str) -> None:
    """Raise a one-line ValueError unless `x` holds floats (codes go to `decode`)."""
    dtype = keras.backend.standardize_dtype(x.dtype)
    if "float" not in dtype:
        raise ValueError(f"{who} expects float vectors; integer indices go to `decode`. Received: dtype={dtype}")


def check_vector_size(layer, shape, who: str, size_name: str) -> None:
    """Raise a one-line ValueError unless ``shape[-1] == layer.embedding_dim``."""
    if shape[-1] != layer.embedding_dim:
        raise ValueError(f"{who} expects the last axis to be {size_name}={layer.embedding_dim}. "
                         f"Received: input shape={tuple(shape)}")


def checked_vectors(layer, x, who: str, size_name: str):
    """``x`` as a float tensor whose last axis is ``layer.embedding_dim``; builds the layer once.

    ``size_name`` names that size in the error (e.g. ``"len(levels)"``).
    """
    x = keras.ops.convert_to_tensor(x)
    check_float(x, who)
    check_vector_size(layer, x.shape, who, size_name)
    if not layer.built:
        layer.build(x.shape)
    return to_internal(x)


LOW_PRECISION = ("float16", "bfloat16")


def internal_dtype(compute_dtype: str) -> str:
    """The dtype a layer computes in: float32 for a low-precision compute dtype, else that dtype."""
    return "float32" if compute_dtype in LOW_PRECISION else compute_dtype


def to_internal(x):
    """`x` cast to float32 if it is float16/bfloat16 (a no-op otherwise).

    Why: squared distances, argmin ties and mixed-radix index sums are exact
    in float32 for the sizes used here, not in 8 (bfloat16) or 11 (float16)
    mantissa bits.
    """
    if keras.backend.standardize_dtype(x.dtype) in LOW_PRECISION:
        return ops.cast(x, "float32")
    return x


def check_int(indices, who: str) -> None:
    if "int" not in keras.backend.standardize_dtype(indices.dtype):
        raise ValueError(f"{who} expects integer indices. Received: dtype={indices.dtype}")


class QuantizerStatistic(keras.metrics.Mean):
    """Batch mean of a quantiser statistic that is absent from the logs until something updates it.

    `result()` returns an empty dict (which `Model.get_metrics_result` merges
    as nothing) while no update has been wired into the traced step, instead
    of the 0.0 of an empty `keras.metrics.Mean`.
    """

    def __init__(self, name: str, **kwargs):
        super().__init__(name=name, **kwargs)
        self.wired = False

    def update_state(self, values, sample_weight=None):
        self.wired = True
        return super().update_state(values, sample_weight=sample_weight)

    def result(self):
        if not self.wired:
            if keras.backend.backend() == "jax" and _traced(self.count.value):
                # A traced train/test step (not Keras's symbolic build of the
                # compiled metrics, where nothing updates anything yet).
                _warn_once(f"{self.name}")
            return {}
        return super().result()


def batch_statistics(indices, codebook_size: int, weights=None):
    """Perplexity and used fraction of `codebook_size` codes over a batch of indices.

    Parameters
    ----------
    indices : tensor [shape=(N,), int]
    codebook_size : int
    weights : tensor [shape=(N,), float], optional
        1 for counted positions, 0 for masked ones.

    Returns
    -------
    (perplexity, usage) : scalar float32 tensors
    """
    indices = ops.cast(ops.reshape(indices, (-1,)), "int32")
    if weights is None:
        weights = ops.ones(ops.shape(indices), "float32")
    else:
        weights = ops.reshape(ops.cast(weights, "float32"), (-1,))
    # segment_sum with a static size traces under jax.jit (ops.bincount does not).
    counts = ops.segment_sum(weights, indices, num_segments=codebook_size)
    probs = counts / ops.maximum(ops.sum(counts), 1.0)
    perplexity = ops.exp(-ops.sum(probs * ops.log(probs + 1e-10)))
    usage = ops.mean(ops.cast(counts > 0, "float32"))
    return perplexity, usage


class BaseQuantizer(keras.layers.Layer):
    """Base class: code interface, batch statistics and their metrics.

    Subclasses implement `encode`, `decode`, `codebook_size`, and call
    `_record_statistics(indices, training)` from their ``call``. A container
    of quantisers (``_owns_metrics = False``) leaves the statistics to them.
    """

    _owns_metrics = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self._owns_metrics:
            self.perplexity_tracker = QuantizerStatistic(f"{self.name}_perplexity")
            self.usage_tracker = QuantizerStatistic(f"{self.name}_usage")
        # Trace-time flag: statistics written in `call` that the model still
        # has to push into the trackers (the JAX path, see module doc).
        self._stats_pending = False

    # ------------------------------------------------------- mixed precision
    @property
    def input_dtype(self):
        """float32 under a mixed policy: `__call__` casts float inputs to it, not to bfloat16/float16."""
        return internal_dtype(self.compute_dtype)

    def add_weight(self, *args, **kwargs):
        # The layer's state stays float32 when read inside a mixed-precision
        # call: no autocast to the compute dtype (EMA sums in bfloat16 would
        # stop moving once decay * sum rounds back to sum).
        kwargs.setdefault("autocast", False)
        return super().add_weight(*args, **kwargs)

    def _output(self, x):
        """`x` in the layer's compute dtype (what `call` and `decode` return)."""
        return ops.cast(x, self.compute_dtype)

    # ------------------------------------------------------------ interface
    @property
    def codebook_size(self) -> int:
        """Number of distinct values one index takes."""
        raise NotImplementedError

    @property
    def codes_per_vector(self) -> int:
        """Indices per latent vector (stages, heads or groups); 1 for a plain quantiser."""
        return 1

    @property
    def bits_per_vector(self) -> float:
        """Bits of one latent vector's code(s) at fixed width: ``codes_per_vector * log2(codebook_size)``."""
        import math

        return self.codes_per_vector * math.log2(self.codebook_size)

    def encode(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, indices):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------- metrics
    def _build_statistics(self):
        self.last_perplexity = self.add_weight(name="last_perplexity", shape=(), initializer="zeros",
                                               trainable=False)
        self.last_usage = self.add_weight(name="last_usage", shape=(), initializer="zeros", trainable=False)

    def _record_statistics(self, indices, training, weights=None):
        """Keep the batch's perplexity/usage and route them to the trackers (see module doc)."""
        perplexity, usage = batch_statistics(indices, self.codebook_size, weights)
        self.last_perplexity.assign(perplexity)
        self.last_usage.assign(usage)
        # Report in fit (training=True) and evaluate/validation (False);
        # training=None is a symbolic build or a bare call.
        if training is not None:
            if keras.backend.backend() == "jax":
                self._stats_pending = True
            else:
                self._update_trackers(perplexity, usage)

    def _update_trackers(self, perplexity, usage):
        self.perplexity_tracker.update_state(perplexity)
        self.usage_tracker.update_state(usage)

    def update_metric_trackers(self):
        """Push the last batch's perplexity and usage into the trackers.

        Called by `update_quantizer_metrics` from a model's ``compute_loss``
        (the JAX path); a no-op when ``call`` already did it (TensorFlow).
        """
        if self._stats_pending:
            self._stats_pending = False
            self._update_trackers(self.last_perplexity.value, self.last_usage.value)

    def codebook_usage(self, x) -> dict:
        """Perplexity and used fraction of the codes over a batch (no state change).

        For quantisers with several indices per vector, all indices count
        together (``codebook_size`` codes each).

        Parameters
        ----------
        x : array [shape=(..., dim), float]

        Returns
        -------
        dict with float ``perplexity`` and ``usage``.
        """
        perplexity, usage = batch_statistics(self.encode(x), self.codebook_size)
        return {"perplexity": float(ops.convert_to_numpy(perplexity)),
                "usage": float(ops.convert_to_numpy(usage))}


def update_quantizer_metrics(model) -> None:
    """Update the perplexity/usage trackers of every vqkeras quantiser in `model`.

    Call it at the top of a model's ``compute_loss`` (where JAX maps both the
    layer state and the metric state); harmless on TensorFlow.
    """
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, BaseQuantizer):
            layer.update_metric_trackers()


class QuantizerMetricsMixin:
    """Mix into a `keras.Model` subclass so quantiser metrics reach `fit` logs on JAX.

    ``class MyModel(vqkeras.QuantizerMetricsMixin, keras.Model): ...``

    It also saves a torch model's optimizer under its public name, so the
    ``.keras`` file loads, compiled, on the other backends
    (`vqkeras.keras_setup.portable_compile_config`).
    """

    def compute_loss(self, *args, **kwargs):
        update_quantizer_metrics(self)
        return super().compute_loss(*args, **kwargs)

    def get_compile_config(self):
        return portable_compile_config(super().get_compile_config())


@keras.saving.register_keras_serializable(package="vqkeras")
class QuantizerMetricsModel(QuantizerMetricsMixin, keras.Model):
    """A functional `keras.Model` whose `fit` logs show quantiser metrics on every backend.

    Use it like ``keras.Model(inputs, outputs)``.
    """


@keras.saving.register_keras_serializable(package="vqkeras")
class QuantizerMetricsSequential(QuantizerMetricsMixin, keras.Sequential):
    """A `keras.Sequential` whose `fit` logs show quantiser metrics on every backend."""
