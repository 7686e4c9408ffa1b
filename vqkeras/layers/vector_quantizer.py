"""`VectorQuantizer`: nearest-codebook quantisation with a straight-through gradient.

VQ-VAE quantiser (van den Oord et al., 2017) with the options that keep a
codebook alive: EMA codebook updates (as in the thesis, after Sonnet's
``VectorQuantizerEMA``), dead-code restart and data-dependent initialisation.
Everything is `keras.ops`, and every piece of state is a Keras variable
assigned in `call`, so training compiles under `jax.jit` and `tf.function`.

Metrics: ``<name>_perplexity`` and ``<name>_usage`` (see `vqkeras.layers.quantizer_base`
for where they reach the `fit` logs on each backend).
"""

from __future__ import annotations

import keras
from keras import ops

from vqkeras.layers.quantizer_base import (  # noqa: F401  (re-exported: older import paths)
    BaseQuantizer,
    QuantizerMetricsModel,
    batch_statistics,
    check_float,
    update_quantizer_metrics,
)

_INITIALIZERS = ("random_normal", "first_batch", "kmeans++")
_KMEANS_ITERS = 5


_check_float = check_float


def _sq_distances(flat, codebook):
    """Squared Euclidean distances, (N, D) x (K, D) -> (N, K)."""
    return (ops.sum(ops.square(flat), axis=1, keepdims=True)
            - 2.0 * ops.matmul(flat, ops.transpose(codebook))
            + ops.sum(ops.square(codebook), axis=1)[None, :])


@keras.saving.register_keras_serializable(package="vqkeras")
class VectorQuantizer(BaseQuantizer):
    """Replace each vector on the last axis by its nearest codebook entry.

    Args:
        num_embeddings: Codebook size ``K``.
        embedding_dim: Vector size ``D`` (the input's last axis).
        beta: Commitment cost: the loss ``beta * mean((z - sg(e))**2)`` is added.
        ema: Update the codebook by exponential moving averages of the assigned
            encoder outputs (no codebook gradient, no codebook loss) instead of
            by gradient descent on ``mean((sg(z) - e)**2)``.
        decay: EMA decay.
        epsilon: Laplace smoothing of the EMA cluster sizes.
        dead_code_threshold: If ``> 0``, a code unused for this many training
            steps in a row is re-seeded with a random encoder output of the
            current batch.
        initializer: ``"random_normal"`` (the thesis), ``"first_batch"`` (random
            vectors of the first training batch) or ``"kmeans++"`` (k-means++
            seeding plus a few Lloyd steps on the first training batch).
        seed: Seed of the layer's random draws (data initialisation, restarts).
        **kwargs: Base `keras.layers.Layer` arguments (``name``, ``dtype``...).

    Input shape:
        ``(..., embedding_dim)``, float, any rank >= 2.

    Output shape:
        Same as the input: the quantised vectors, with the straight-through
        gradient ``z + sg(e - z)``.

    Raises:
        ValueError: A bad argument, an input whose last axis is not
            ``embedding_dim`` or a non-float input.

    Example:

    >>> vq = VectorQuantizer(64, 8)
    >>> z = np.random.normal(size=(2, 16, 16, 8)).astype("float32")
    >>> vq(z).shape, vq.encode(z).shape, vq.decode(vq.encode(z)).shape
    ((2, 16, 16, 8), (2, 16, 16), (2, 16, 16, 8))
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        beta: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        dead_code_threshold: int = 0,
        initializer: str = "random_normal",
        seed: int | None = None,
        **kwargs,
    ):
        if not isinstance(num_embeddings, int) or num_embeddings < 1:
            raise ValueError(f"`num_embeddings` must be a positive integer. Received: num_embeddings={num_embeddings}")
        if not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"`embedding_dim` must be a positive integer. Received: embedding_dim={embedding_dim}")
        if not beta >= 0:
            raise ValueError(f"`beta` must be >= 0. Received: beta={beta}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"`decay` must be in (0, 1). Received: decay={decay}")
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be > 0. Received: epsilon={epsilon}")
        if not isinstance(dead_code_threshold, int) or dead_code_threshold < 0:
            raise ValueError("`dead_code_threshold` must be an integer >= 0 (0 disables restarts). "
                             f"Received: dead_code_threshold={dead_code_threshold}")
        if initializer not in _INITIALIZERS:
            raise ValueError(f"`initializer` must be one of {', '.join(_INITIALIZERS)}. "
                             f"Received: initializer={initializer!r}")
        if not ema and kwargs.get("trainable") is False and dead_code_threshold:
            raise ValueError("`dead_code_threshold` needs a codebook that learns (ema=True or trainable). "
                             f"Received: ema={ema}, trainable=False")
        super().__init__(**kwargs)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.beta = float(beta)
        self.ema = bool(ema)
        self.decay = float(decay)
        self.epsilon = float(epsilon)
        self.dead_code_threshold = dead_code_threshold
        self.initializer = initializer
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    # ------------------------------------------------------------------ state
    def build(self, input_shape):
        if input_shape[-1] != self.embedding_dim:
            raise ValueError(f"VectorQuantizer expects the last axis to be embedding_dim={self.embedding_dim}. "
                             f"Received: input shape={tuple(input_shape)}")
        K, D = self.num_embeddings, self.embedding_dim
        self.embeddings = self.add_weight(
            name="embeddings", shape=(K, D), trainable=not self.ema,
            initializer=keras.initializers.RandomNormal(stddev=1.0, seed=self.seed))
        # With a trainable codebook, data-driven writes (initialisation,
        # restarts) go into a non-trainable shift: on JAX a layer can only
        # write its non-trainable variables from `call`.
        self._needs_shift = not self.ema and (self.initializer != "random_normal" or self.dead_code_threshold > 0)
        if self._needs_shift:
            self.shift = self.add_weight(name="shift", shape=(K, D), initializer="zeros", trainable=False)
        if self.ema:
            # Counts start at one and sums at the initial codebook, so unused
            # codes keep their vector instead of collapsing to zero.
            self.ema_cluster_size = self.add_weight(name="ema_cluster_size", shape=(K,), initializer="ones",
                                                    trainable=False)
            self.ema_embedding_sum = self.add_weight(name="ema_embedding_sum", shape=(K, D), trainable=False,
                                                     initializer="zeros")
            # (a numpy copy: on JAX two variables must not share one buffer)
            self.ema_embedding_sum.assign(ops.convert_to_numpy(self.embeddings))
        self.initialized = self.add_weight(
            name="initialized", shape=(), trainable=False,
            initializer="ones" if self.initializer == "random_normal" else "zeros")
        if self.dead_code_threshold:
            self.steps_unused = self.add_weight(name="steps_unused", shape=(K,), initializer="zeros",
                                                trainable=False)
        self._build_statistics()
        self.built = True

    def _ensure_built(self):
        # encode/decode may come before any call (e.g. a codec decoding indices).
        if not self.built:
            self.build((None, self.embedding_dim))

    @property
    def codebook(self):
        """The ``(num_embeddings, embedding_dim)`` codebook in use."""
        self._ensure_built()
        if self._needs_shift:
            return self.embeddings.value + self.shift.value
        return self.embeddings.value

    # -------------------------------------------------------------- encoding
    def _flatten(self, x, who):
        _check_float(x, who)
        if x.shape[-1] != self.embedding_dim:
            raise ValueError(f"{who} expects the last axis to be embedding_dim={self.embedding_dim}. "
                             f"Received: input shape={tuple(x.shape)}")
        return ops.reshape(x, (-1, self.embedding_dim))

    def encode(self, x):
        """Indices of the nearest codes.

        Parameters
        ----------
        x : tensor [shape=(..., embedding_dim), float]

        Returns
        -------
        tensor [shape=x.shape[:-1], int32]
        """
        x = ops.convert_to_tensor(x)
        flat = self._flatten(x, "VectorQuantizer.encode")
        codebook = ops.cast(self.codebook, flat.dtype)
        idx = ops.cast(ops.argmin(_sq_distances(flat, codebook), axis=-1), "int32")
        return ops.reshape(idx, ops.shape(x)[:-1])

    def decode(self, indices):
        """Codebook vectors for integer indices.

        Parameters
        ----------
        indices : tensor [shape=(...), int]

        Returns
        -------
        tensor [shape=indices.shape + (embedding_dim,), float]
        """
        indices = ops.convert_to_tensor(indices)
        if "int" not in keras.backend.standardize_dtype(indices.dtype):
            raise ValueError(f"VectorQuantizer.decode expects integer indices. Received: dtype={indices.dtype}")
        return ops.take(self.codebook, ops.cast(indices, "int32"), axis=0)

    # ------------------------------------------------------------ init paths
    @staticmethod
    def _random_rows(flat, u):
        """Rows of `flat` picked by uniforms `u` (with replacement; works for a dynamic batch)."""
        n = ops.shape(flat)[0]
        idx = ops.cast(ops.floor(u * ops.cast(n, "float32")), "int32")
        return ops.take(flat, ops.minimum(idx, ops.cast(n, "int32") - 1), axis=0)

    def _kmeans_pp(self, flat, u):
        """k-means++ seeding (inverse-CDF sampling by D(x)^2) and a few Lloyd steps.

        `u` holds ``num_embeddings`` uniforms, drawn outside so that no random
        state changes inside `ops.cond`.
        """
        K = self.num_embeddings
        n_last = ops.cast(ops.shape(flat)[0], "int32") - 1
        first = self._random_rows(flat, u[:1])
        centroids = ops.concatenate([first, ops.zeros((K - 1, self.embedding_dim), flat.dtype)], axis=0)
        d2 = ops.sum(ops.square(flat - first), axis=1)

        def pick(k, state):
            centroids, d2 = state
            cdf = ops.cumsum(d2)
            j = ops.cast(ops.searchsorted(cdf, ops.reshape(u[k] * cdf[-1], (1,))), "int32")
            c = ops.take(flat, ops.minimum(j, n_last), axis=0)
            centroids = ops.slice_update(centroids, (k, 0), c)
            return centroids, ops.minimum(d2, ops.sum(ops.square(flat - c), axis=1))

        centroids, _ = ops.fori_loop(1, K, pick, (centroids, d2))
        for _ in range(_KMEANS_ITERS):
            onehot = ops.one_hot(ops.argmin(_sq_distances(flat, centroids), axis=1), K, dtype=flat.dtype)
            counts = ops.sum(onehot, axis=0)
            means = ops.matmul(ops.transpose(onehot), flat) / ops.maximum(counts, 1.0)[:, None]
            centroids = ops.where(counts[:, None] > 0, means, centroids)
        return centroids

    def _data_init(self, flat):
        """On the first training call, replace the codebook by one drawn from data."""
        flat = ops.stop_gradient(ops.cast(flat, "float32"))
        current = ops.cast(self.codebook, "float32")
        u = keras.random.uniform((self.num_embeddings,), seed=self.seed_generator)
        draw = self._kmeans_pp if self.initializer == "kmeans++" else self._random_rows
        new = ops.cond(self.initialized > 0.5, lambda: current, lambda: draw(flat, u))
        self._set_codebook(new)
        if self.ema:
            fresh = self.initialized < 0.5
            self.ema_embedding_sum.assign(ops.where(fresh, new, self.ema_embedding_sum.value))
            self.ema_cluster_size.assign(ops.where(fresh, ops.ones((self.num_embeddings,)),
                                                   self.ema_cluster_size.value))
        self.initialized.assign(1.0)
        return new

    def _set_codebook(self, new):
        if self._needs_shift:
            self.shift.assign(new - ops.stop_gradient(self.embeddings.value))
        else:
            self.embeddings.assign(new)

    # ------------------------------------------------------------------ call
    def call(self, inputs, training=None):
        flat = self._flatten(inputs, "VectorQuantizer")
        codebook = ops.cast(self.codebook, flat.dtype)
        if training and self.initializer != "random_normal":
            codebook = ops.cast(self._data_init(flat), flat.dtype)
        idx = ops.argmin(_sq_distances(flat, ops.stop_gradient(codebook)), axis=-1)
        onehot = ops.one_hot(idx, self.num_embeddings, dtype="float32")
        quantized_flat = ops.take(codebook, idx, axis=0)
        counts = ops.sum(onehot, axis=0)

        if training:
            flat32 = ops.stop_gradient(ops.cast(flat, "float32"))
            if self.ema:
                self._ema_update(flat32, onehot, counts)
            if self.dead_code_threshold:
                self._restart_dead_codes(flat32, counts)

        # Losses (means over all elements, as Sonnet): the encoder commits to
        # its code; without EMA the codebook also moves towards the encoder.
        sg = ops.stop_gradient
        loss = self.beta * ops.mean(ops.square(flat - sg(quantized_flat)))
        if not self.ema:
            loss = loss + ops.mean(ops.square(sg(flat) - quantized_flat))
        self.add_loss(ops.cast(loss, "float32"))

        self._record_statistics(idx, training)

        quantized = ops.reshape(quantized_flat, ops.shape(inputs))
        # Straight-through estimator: forward = code, backward = identity.
        return inputs + sg(quantized - inputs)

    def _ema_update(self, flat, onehot, counts):
        d = self.decay
        cluster_size = self.ema_cluster_size * d + (1.0 - d) * counts
        embedding_sum = self.ema_embedding_sum * d + (1.0 - d) * ops.matmul(ops.transpose(onehot), flat)
        n = ops.sum(cluster_size)
        # Laplace smoothing keeps the division safe for rarely used codes.
        smoothed = (cluster_size + self.epsilon) / (n + self.num_embeddings * self.epsilon) * n
        self.ema_cluster_size.assign(cluster_size)
        self.ema_embedding_sum.assign(embedding_sum)
        self.embeddings.assign(embedding_sum / smoothed[:, None])

    def _restart_dead_codes(self, flat, counts):
        steps = ops.where(counts > 0, 0.0, self.steps_unused + 1.0)
        dead = steps >= float(self.dead_code_threshold)
        u = keras.random.uniform((self.num_embeddings,), seed=self.seed_generator)
        candidates = self._random_rows(flat, u)
        codebook = ops.cast(self.codebook, "float32")
        self._set_codebook(ops.where(dead[:, None], candidates, codebook))
        if self.ema:
            self.ema_embedding_sum.assign(ops.where(dead[:, None], candidates, self.ema_embedding_sum.value))
            self.ema_cluster_size.assign(ops.where(dead, 1.0, self.ema_cluster_size.value))
        self.steps_unused.assign(ops.where(dead, 0.0, steps))

    @property
    def codebook_size(self) -> int:
        return self.num_embeddings

    # ---------------------------------------------------------- keras plumbing
    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "beta": self.beta,
            "ema": self.ema,
            "decay": self.decay,
            "epsilon": self.epsilon,
            "dead_code_threshold": self.dead_code_threshold,
            "initializer": self.initializer,
            "seed": self.seed,
        })
        return config
