"""`VectorQuantizer`: nearest-codebook quantisation with a straight-through gradient.

VQ-VAE quantiser (van den Oord et al., 2017) with the options that keep a
codebook alive: EMA codebook updates (as in the thesis, after Sonnet's
``VectorQuantizerEMA``), dead-code restart and data-dependent initialisation;
and the options of the modern quantisers: cosine distance, a low-dimensional
codebook behind learned projections, orthogonal codebook regularisation, the
rotation-trick gradient (Fifty et al. 2024), several heads with shared or
separate codebooks, Gumbel sampling of codes in training, and a padding mask.
Everything is `keras.ops`, and every piece of state is a Keras variable
assigned in `call`, so training compiles under `jax.jit` and `tf.function`.

Under `keras.distribution.DataParallel` (JAX) the step is one global program:
the batch sums behind EMA statistics, data initialisation and restarts are
all-reduced by XLA and the random draws come from the replicated seed state, so
every replica holds the same codebook.

Metrics: ``<name>_perplexity`` and ``<name>_usage`` (see
`vqkeras.layers.quantizer_base` for where they reach the `fit` logs).
"""

from __future__ import annotations

import keras
from keras import ops

from vqkeras.layers.quantizer_base import (  # noqa: F401  (re-exported: older import paths)
    BaseQuantizer,
    QuantizerMetricsModel,
    batch_statistics,
    check_float,
    check_int,
    to_internal,
    update_quantizer_metrics,
)

_INITIALIZERS = ("random_normal", "first_batch", "kmeans++")
_DISTANCES = ("euclidean", "cosine")
_GRADIENTS = ("straight_through", "rotation")
_KMEANS_ITERS = 5

_check_float = check_float


def _sq_distances(flat, codebook):
    """Squared Euclidean distances, (N, D) x (K, D) -> (N, K)."""
    return (ops.sum(ops.square(flat), axis=1, keepdims=True)
            - 2.0 * ops.matmul(flat, ops.transpose(codebook))
            + ops.sum(ops.square(codebook), axis=1)[None, :])


def _l2_normalize(x, axis=-1):
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), 1e-12))


def _rotate_to(z, e):
    """Rotation trick: ``e`` in the forward pass, gradient through a fixed rotation and scaling of ``z``.

    ``R`` rotates ``z/|z|`` onto ``e/|e|`` (a Householder pair, applied without
    building the matrix) and ``|e|/|z|`` rescales; both are constants for the
    gradient, so ``dL/dz = (|e|/|z|) R^T dL/de`` keeps the angle between the
    gradient and the code.
    """
    sg = ops.stop_gradient
    z_norm = ops.sqrt(ops.maximum(ops.sum(ops.square(z), axis=-1, keepdims=True), 1e-12))
    e_norm = ops.sqrt(ops.maximum(ops.sum(ops.square(e), axis=-1, keepdims=True), 1e-12))
    z_hat, e_hat = sg(z / z_norm), sg(e / e_norm)
    r = sg(_l2_normalize(z_hat + e_hat))
    rotated = (z - 2.0 * r * ops.sum(r * z, axis=-1, keepdims=True)
               + 2.0 * e_hat * ops.sum(z_hat * z, axis=-1, keepdims=True))
    return rotated * sg(e_norm / z_norm)


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
        distance: ``"euclidean"`` or ``"cosine"`` (inputs and codes are
            l2-normalised; the output and the codes have unit norm).
        codebook_dim: Quantise in a ``codebook_dim``-dimensional space behind
            a learned linear down-projection; a learned up-projection maps the
            code back to ``embedding_dim``. ``None``: no projection.
        orthogonal_reg_weight: Weight of ``mean((Ĉ Ĉᵀ - I)**2)`` on the
            l2-normalised codebook ``Ĉ`` (needs a codebook learned by gradient,
            ``ema=False``).
        gradient: ``"straight_through"`` (``z + sg(e - z)``) or ``"rotation"``
            (the rotation trick of Fifty et al. 2024).
        num_heads: Split each (projected) vector into this many heads, each
            quantised on its own: ``encode`` gives ``(..., num_heads)`` indices.
        separate_codebook_per_head: One codebook per head instead of one shared.
        stochastic_temperature: If ``> 0``, training draws each code from
            ``softmax(-distance / T)`` (Gumbel-max) instead of taking the
            nearest; inference always takes the nearest.
        seed: Seed of the layer's random draws (data initialisation, restarts,
            sampling).
        **kwargs: Base `keras.layers.Layer` arguments (``name``, ``dtype``...).

    Call arguments:
        inputs: ``(..., embedding_dim)`` floats.
        training: Training mode (EMA, restarts, initialisation, sampling).
        mask: Optional boolean ``inputs.shape[:-1]``: ``False`` positions
            (padding) are quantised but left out of the losses, the EMA and
            restart statistics, the data initialisation and the metrics.

    Output shape:
        Same as the input: the quantised vectors.

    Raises:
        ValueError: A bad or incompatible argument, an input whose last axis is
            not ``embedding_dim`` or a non-float input.

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
        distance: str = "euclidean",
        codebook_dim: int | None = None,
        orthogonal_reg_weight: float = 0.0,
        gradient: str = "straight_through",
        num_heads: int = 1,
        separate_codebook_per_head: bool = False,
        stochastic_temperature: float = 0.0,
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
        if distance not in _DISTANCES:
            raise ValueError(f"`distance` must be one of {', '.join(_DISTANCES)}. Received: distance={distance!r}")
        if gradient not in _GRADIENTS:
            raise ValueError(f"`gradient` must be one of {', '.join(_GRADIENTS)}. Received: gradient={gradient!r}")
        if codebook_dim is not None and (not isinstance(codebook_dim, int) or codebook_dim < 1):
            raise ValueError(f"`codebook_dim` must be None or a positive integer. Received: codebook_dim={codebook_dim}")
        quant_dim = codebook_dim or embedding_dim
        if not isinstance(num_heads, int) or num_heads < 1 or quant_dim % num_heads:
            raise ValueError(f"`num_heads` must be a positive integer that divides the quantised dimension "
                             f"({quant_dim}). Received: num_heads={num_heads}")
        if separate_codebook_per_head and num_heads == 1:
            raise ValueError("`separate_codebook_per_head` needs num_heads > 1. Received: num_heads=1")
        if not orthogonal_reg_weight >= 0:
            raise ValueError(f"`orthogonal_reg_weight` must be >= 0. Received: orthogonal_reg_weight="
                             f"{orthogonal_reg_weight}")
        if orthogonal_reg_weight and ema:
            raise ValueError("`orthogonal_reg_weight` acts through the codebook gradient, which an EMA codebook "
                             f"does not have. Received: orthogonal_reg_weight={orthogonal_reg_weight}, ema=True")
        if not stochastic_temperature >= 0:
            raise ValueError(f"`stochastic_temperature` must be >= 0 (0: nearest code). "
                             f"Received: stochastic_temperature={stochastic_temperature}")
        if not ema and kwargs.get("trainable") is False and dead_code_threshold:
            raise ValueError("`dead_code_threshold` needs a codebook that learns (ema=True or trainable). "
                             f"Received: ema={ema}, trainable=False")
        super().__init__(**kwargs)
        self.supports_masking = True
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.beta = float(beta)
        self.ema = bool(ema)
        self.decay = float(decay)
        self.epsilon = float(epsilon)
        self.dead_code_threshold = dead_code_threshold
        self.initializer = initializer
        self.distance = distance
        self.codebook_dim = codebook_dim
        self.orthogonal_reg_weight = float(orthogonal_reg_weight)
        self.gradient = gradient
        self.num_heads = num_heads
        self.separate_codebook_per_head = bool(separate_codebook_per_head)
        self.stochastic_temperature = float(stochastic_temperature)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # Quantised space: (projected) vectors split into heads of head_dim.
        self._quant_dim = quant_dim
        self.head_dim = quant_dim // num_heads
        self._books = num_heads if self.separate_codebook_per_head else 1

    # ------------------------------------------------------------------ state
    def _book_shape(self, *tail):
        # One codebook keeps the original (K, D) layout (older .keras files).
        return tail if self._books == 1 else (self._books, *tail)

    def build(self, input_shape):
        if input_shape[-1] != self.embedding_dim:
            raise ValueError(f"VectorQuantizer expects the last axis to be embedding_dim={self.embedding_dim}. "
                             f"Received: input shape={tuple(input_shape)}")
        K, d = self.num_embeddings, self.head_dim
        self.embeddings = self.add_weight(
            name="embeddings", shape=self._book_shape(K, d), trainable=not self.ema,
            initializer=keras.initializers.RandomNormal(stddev=1.0, seed=self.seed))
        # With a trainable codebook, data-driven writes (initialisation,
        # restarts) go into a non-trainable shift: on JAX a layer can only
        # write its non-trainable variables from `call`.
        self._needs_shift = not self.ema and (self.initializer != "random_normal" or self.dead_code_threshold > 0)
        if self._needs_shift:
            self.shift = self.add_weight(name="shift", shape=self._book_shape(K, d), initializer="zeros",
                                         trainable=False)
        if self.ema:
            # Counts start at one and sums at the initial codebook, so unused
            # codes keep their vector instead of collapsing to zero.
            self.ema_cluster_size = self.add_weight(name="ema_cluster_size", shape=self._book_shape(K),
                                                    initializer="ones", trainable=False)
            self.ema_embedding_sum = self.add_weight(name="ema_embedding_sum", shape=self._book_shape(K, d),
                                                     trainable=False, initializer="zeros")
            # (a numpy copy: on JAX two variables must not share one buffer)
            self.ema_embedding_sum.assign(ops.convert_to_numpy(self.embeddings))
        self.initialized = self.add_weight(
            name="initialized", shape=(), trainable=False,
            initializer="ones" if self.initializer == "random_normal" else "zeros")
        if self.dead_code_threshold:
            self.steps_unused = self.add_weight(name="steps_unused", shape=self._book_shape(K), initializer="zeros",
                                                trainable=False)
        self._build_statistics()
        if self.codebook_dim is not None:
            D, C = self.embedding_dim, self.codebook_dim
            self.project_in_kernel = self.add_weight(name="project_in_kernel", shape=(D, C),
                                                     initializer=keras.initializers.GlorotUniform(seed=self.seed))
            self.project_in_bias = self.add_weight(name="project_in_bias", shape=(C,), initializer="zeros")
            self.project_out_kernel = self.add_weight(name="project_out_kernel", shape=(C, D),
                                                      initializer=keras.initializers.GlorotUniform(seed=self.seed))
            self.project_out_bias = self.add_weight(name="project_out_bias", shape=(D,), initializer="zeros")
        self.built = True

    def _ensure_built(self):
        # encode/decode may come before any call (e.g. a codec decoding indices).
        if not self.built:
            self.build((None, self.embedding_dim))

    def _raw_books(self):
        """The codebook(s) as ``(books, K, head_dim)`` (no normalisation)."""
        self._ensure_built()
        book = self.embeddings.value
        if self._needs_shift:
            book = book + self.shift.value
        return ops.reshape(book, (self._books, self.num_embeddings, self.head_dim))

    def _books_in_use(self):
        books = self._raw_books()
        return _l2_normalize(books) if self.distance == "cosine" else books

    @property
    def codebook(self):
        """The codebook in use: ``(num_embeddings, head_dim)``, or ``(num_heads, K, head_dim)``
        with separate codebooks per head (unit rows with ``distance="cosine"``)."""
        books = self._books_in_use()
        return books[0] if self._books == 1 else books

    @property
    def codebook_size(self) -> int:
        return self.num_embeddings

    @property
    def codes_per_vector(self) -> int:
        return self.num_heads

    # ---------------------------------------------------------- projections
    def _project_in(self, flat):
        if self.codebook_dim is None:
            return flat
        return ops.matmul(flat, ops.cast(self.project_in_kernel, flat.dtype)) + ops.cast(self.project_in_bias,
                                                                                          flat.dtype)

    def _project_out(self, flat):
        if self.codebook_dim is None:
            return flat
        return ops.matmul(flat, ops.cast(self.project_out_kernel, flat.dtype)) + ops.cast(self.project_out_bias,
                                                                                           flat.dtype)

    def _to_heads(self, flat):
        """(N, quant_dim) -> (N', books, head_dim): shared-codebook heads become more rows."""
        if self._books == 1:
            return ops.reshape(flat, (-1, 1, self.head_dim))
        return ops.reshape(flat, (-1, self._books, self.head_dim))

    # -------------------------------------------------------------- encoding
    def _flatten(self, x, who):
        check_float(x, who)
        if x.shape[-1] != self.embedding_dim:
            raise ValueError(f"{who} expects the last axis to be embedding_dim={self.embedding_dim}. "
                             f"Received: input shape={tuple(x.shape)}")
        # float32 from here on under a mixed policy (distances, argmin, EMA).
        return to_internal(ops.reshape(x, (-1, self.embedding_dim)))

    def _distances(self, z, books):
        """(N', B, d) x (B, K, d) -> (N', B, K) squared distances."""
        cross = ops.einsum("nbd,bkd->nbk", z, books)
        return (ops.sum(ops.square(z), axis=-1, keepdims=True) - 2.0 * cross
                + ops.sum(ops.square(books), axis=-1)[None])

    def _lookup(self, books, idx):
        """Codes of indices ``idx`` (N', B) from ``books`` (B, K, d) -> (N', B, d)."""
        offsets = ops.arange(self._books, dtype="int32")[None, :] * self.num_embeddings
        flat_books = ops.reshape(books, (self._books * self.num_embeddings, self.head_dim))
        return ops.take(flat_books, ops.cast(idx, "int32") + offsets, axis=0)

    def encode(self, x):
        """Indices of the nearest codes.

        Parameters
        ----------
        x : tensor [shape=(..., embedding_dim), float]

        Returns
        -------
        tensor [shape=x.shape[:-1], int32]; with ``num_heads > 1``,
        ``x.shape[:-1] + (num_heads,)``.
        """
        x = ops.convert_to_tensor(x)
        flat = self._flatten(x, "VectorQuantizer.encode")
        self._ensure_built()
        z = self._to_heads(self._project_in(flat))
        books = ops.cast(self._books_in_use(), z.dtype)
        if self.distance == "cosine":
            z = _l2_normalize(z)
        idx = ops.cast(ops.argmin(self._distances(z, books), axis=-1), "int32")
        shape = tuple(ops.shape(x)[:-1]) + ((self.num_heads,) if self.num_heads > 1 else ())
        return ops.reshape(idx, shape)

    def decode(self, indices):
        """Code vectors for integer indices.

        Parameters
        ----------
        indices : tensor [shape=(...), int]; with ``num_heads > 1``, ``(..., num_heads)``

        Returns
        -------
        tensor [shape=indices.shape + (embedding_dim,), compute dtype] (heads:
        ``indices.shape[:-1] + (embedding_dim,)``); bfloat16/float16 under a
        mixed policy, like `call`.
        """
        indices = ops.convert_to_tensor(indices)
        check_int(indices, "VectorQuantizer.decode")
        indices = ops.cast(indices, "int32")
        if self.num_heads > 1:
            if indices.shape[-1] != self.num_heads:
                raise ValueError(f"VectorQuantizer.decode expects indices of shape (..., num_heads="
                                 f"{self.num_heads}). Received: indices shape={tuple(indices.shape)}")
            lead = tuple(ops.shape(indices)[:-1])
        else:
            lead = tuple(ops.shape(indices))
        books = self._books_in_use()
        codes = self._lookup(books, ops.reshape(indices, (-1, self._books)))
        out = self._project_out(ops.reshape(codes, (-1, self._quant_dim)))
        return self._output(ops.reshape(out, lead + (self.embedding_dim,)))

    # ------------------------------------------------------------ init paths
    @staticmethod
    def _random_rows(flat, u):
        """Rows of `flat` picked by uniforms `u` (with replacement; works for a dynamic batch)."""
        n = ops.shape(flat)[0]
        idx = ops.cast(ops.floor(u * ops.cast(n, "float32")), "int32")
        return ops.take(flat, ops.minimum(idx, ops.cast(n, "int32") - 1), axis=0)

    @staticmethod
    def _weighted_rows(flat, weights, u):
        """Rows drawn with probability proportional to `weights` (inverse CDF of uniforms `u`)."""
        cdf = ops.cumsum(weights)
        total = ops.maximum(cdf[-1], 1e-12)
        idx = ops.cast(ops.searchsorted(cdf, u * total), "int32")
        return ops.take(flat, ops.minimum(idx, ops.cast(ops.shape(flat)[0], "int32") - 1), axis=0)

    def _kmeans_pp(self, flat, weights, u):
        """k-means++ seeding (inverse-CDF sampling by D(x)^2) and a few Lloyd steps.

        `u` holds ``num_embeddings`` uniforms, drawn outside so that no random
        state changes inside `ops.cond`; `weights` zero the masked rows.
        """
        K = self.num_embeddings
        n_last = ops.cast(ops.shape(flat)[0], "int32") - 1
        first = self._weighted_rows(flat, weights, u[:1])
        centroids = ops.concatenate([first, ops.zeros((K - 1, self.head_dim), flat.dtype)], axis=0)
        d2 = ops.sum(ops.square(flat - first), axis=1) * weights

        def pick(k, state):
            centroids, d2 = state
            cdf = ops.cumsum(d2)
            j = ops.cast(ops.searchsorted(cdf, ops.reshape(u[k] * cdf[-1], (1,))), "int32")
            c = ops.take(flat, ops.minimum(j, n_last), axis=0)
            centroids = ops.slice_update(centroids, (k, 0), c)
            return centroids, ops.minimum(d2, ops.sum(ops.square(flat - c), axis=1) * weights)

        centroids, _ = ops.fori_loop(1, K, pick, (centroids, d2))
        for _ in range(_KMEANS_ITERS):
            onehot = ops.one_hot(ops.argmin(_sq_distances(flat, centroids), axis=1), K, dtype=flat.dtype)
            onehot = onehot * weights[:, None]
            counts = ops.sum(onehot, axis=0)
            means = ops.matmul(ops.transpose(onehot), flat) / ops.maximum(counts, 1.0)[:, None]
            centroids = ops.where(counts[:, None] > 0, means, centroids)
        return centroids

    def _draw_books(self, z, weights, u):
        """Codebook(s) drawn from the batch ``z`` (books stacked): weighted rows or k-means++."""
        books = []
        for b in range(self._books):
            if self.initializer == "kmeans++":
                books.append(self._kmeans_pp(z[:, b], weights, u[b]))
            else:
                books.append(self._weighted_rows(z[:, b], weights, u[b]))
        return ops.stack(books)

    def _data_init(self, z, weights):
        """On the first training call, replace the codebook(s) by ones drawn from data."""
        z = ops.stop_gradient(ops.cast(z, "float32"))
        # Drawn on every call, whether used or not, so the seed state advances
        # alike on every backend (same restarts after the first step).
        u = keras.random.uniform((self._books, self.num_embeddings), seed=self.seed_generator)
        if keras.backend.backend() == "torch":
            # Why not `ops.cond`: on torch it is a Python `if` inside a freshly
            # named `Cond` operation, and torch.compile (jit_compile=True)
            # guards on that name, recompiling every step up to dynamo's
            # limit. A plain branch on the flag is one data-dependent graph
            # break with two cached continuations, and eager torch skips
            # the k-means++ work once initialised.
            if self.initialized.value > 0.5:
                return
            new = self._draw_books(z, weights, u)
        else:
            current = self._raw_books()
            new = ops.cond(self.initialized > 0.5, lambda: current, lambda: self._draw_books(z, weights, u))
        self._set_books(new)
        if self.ema:
            fresh = self.initialized < 0.5
            self.ema_embedding_sum.assign(ops.where(fresh, self._stored(new), self.ema_embedding_sum.value))
            self.ema_cluster_size.assign(ops.where(fresh, ops.ones(self._book_shape(self.num_embeddings)),
                                                   self.ema_cluster_size.value))
        self.initialized.assign(1.0)

    def _stored(self, books):
        """(books, K, d) -> the variables' layout."""
        return ops.reshape(books, self._book_shape(self.num_embeddings, self.head_dim))

    def _set_books(self, new):
        new = self._stored(new)
        if self._needs_shift:
            self.shift.assign(new - ops.stop_gradient(self.embeddings.value))
        else:
            self.embeddings.assign(new)

    # ------------------------------------------------------------------ call
    def call(self, inputs, training=None, mask=None):
        flat = self._flatten(inputs, "VectorQuantizer")
        z = self._to_heads(self._project_in(flat))
        if self.distance == "cosine":
            z = _l2_normalize(z)
        rows = ops.shape(z)[0]
        if mask is None:
            weights = ops.ones((rows,), "float32")
        else:
            # Heads that share a codebook are rows of their own: repeat the mask.
            per_vector = ops.reshape(ops.cast(mask, "float32"), (-1, 1))
            heads_as_rows = self.num_heads if self._books == 1 else 1
            weights = ops.reshape(ops.repeat(per_vector, heads_as_rows, axis=1), (-1,))
        if training and self.initializer != "random_normal":
            self._data_init(z, weights)
        books = ops.cast(self._books_in_use(), z.dtype)
        distances = self._distances(z, ops.stop_gradient(books))
        if training and self.stochastic_temperature > 0:
            u = keras.random.uniform(ops.shape(distances), minval=1e-6, maxval=1.0 - 1e-6, seed=self.seed_generator)
            gumbel = -ops.log(-ops.log(u))
            idx = ops.argmax(-ops.cast(distances, "float32") / self.stochastic_temperature + gumbel, axis=-1)
        else:
            idx = ops.argmin(distances, axis=-1)
        idx = ops.cast(idx, "int32")  # (N', books)
        quantized = self._lookup(books, idx)  # (N', books, d)

        if training and (self.ema or self.dead_code_threshold):
            onehot = ops.one_hot(idx, self.num_embeddings, dtype="float32") * weights[:, None, None]
            counts = ops.sum(onehot, axis=0)  # (books, K)
            z32 = ops.stop_gradient(ops.cast(z, "float32"))
            if self.ema:
                self._ema_update(z32, onehot, counts)
            if self.dead_code_threshold:
                self._restart_dead_codes(z32, weights, counts)

        self._add_losses(z, quantized, books, weights)
        self._record_statistics(idx, training, ops.repeat(weights[:, None], self._books, axis=1))

        if self.gradient == "rotation":
            out = _rotate_to(z, ops.stop_gradient(quantized))
        else:
            out = z + ops.stop_gradient(quantized - z)  # straight-through
        out = self._project_out(ops.reshape(out, (-1, self._quant_dim)))
        return self._output(ops.reshape(out, ops.shape(inputs)))

    def _add_losses(self, z, quantized, books, weights):
        # Means over the unmasked elements (all of them without a mask, as Sonnet).
        sg = ops.stop_gradient
        denom = ops.maximum(ops.sum(weights), 1.0) * float(self._books * self.head_dim)

        def masked_mean(sq):
            return ops.sum(ops.cast(sq, "float32") * weights[:, None, None]) / denom

        # The encoder commits to its code; without EMA the codebook also moves
        # towards the encoder.
        loss = self.beta * masked_mean(ops.square(z - sg(quantized)))
        if not self.ema:
            loss = loss + masked_mean(ops.square(sg(z) - quantized))
        if self.orthogonal_reg_weight:
            normed = _l2_normalize(ops.cast(books, "float32"))
            gram = ops.einsum("bkd,bjd->bkj", normed, normed)
            loss = loss + self.orthogonal_reg_weight * ops.mean(
                ops.square(gram - ops.eye(self.num_embeddings)[None]))
        self.add_loss(ops.cast(loss, "float32"))

    def _ema_update(self, z, onehot, counts):
        d = self.decay
        cluster_size = ops.reshape(self.ema_cluster_size.value, (self._books, -1)) * d + (1.0 - d) * counts
        batch_sum = ops.einsum("nbk,nbd->bkd", onehot, z)
        embedding_sum = ops.reshape(self.ema_embedding_sum.value, (self._books, self.num_embeddings, -1)) * d
        embedding_sum = embedding_sum + (1.0 - d) * batch_sum
        n = ops.sum(cluster_size, axis=-1, keepdims=True)
        # Laplace smoothing keeps the division safe for rarely used codes.
        smoothed = (cluster_size + self.epsilon) / (n + self.num_embeddings * self.epsilon) * n
        self.ema_cluster_size.assign(ops.reshape(cluster_size, self._book_shape(self.num_embeddings)))
        self.ema_embedding_sum.assign(self._stored(embedding_sum))
        self.embeddings.assign(self._stored(embedding_sum / smoothed[..., None]))

    def _restart_dead_codes(self, z, weights, counts):
        steps = ops.where(counts > 0, 0.0, ops.reshape(self.steps_unused.value, (self._books, -1)) + 1.0)
        dead = steps >= float(self.dead_code_threshold)  # (books, K)
        u = keras.random.uniform((self._books, self.num_embeddings), seed=self.seed_generator)
        candidates = ops.stack([self._weighted_rows(z[:, b], weights, u[b]) for b in range(self._books)])
        books = self._raw_books()
        self._set_books(ops.where(dead[..., None], candidates, books))
        if self.ema:
            ema_sum = ops.reshape(self.ema_embedding_sum.value, (self._books, self.num_embeddings, -1))
            self.ema_embedding_sum.assign(self._stored(ops.where(dead[..., None], candidates, ema_sum)))
            sizes = ops.reshape(self.ema_cluster_size.value, (self._books, -1))
            self.ema_cluster_size.assign(ops.reshape(ops.where(dead, 1.0, sizes),
                                                     self._book_shape(self.num_embeddings)))
        self.steps_unused.assign(ops.reshape(ops.where(dead, 0.0, steps), self._book_shape(self.num_embeddings)))

    # ---------------------------------------------------------- keras plumbing
    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_mask(self, inputs, mask=None):
        return mask

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
            "distance": self.distance,
            "codebook_dim": self.codebook_dim,
            "orthogonal_reg_weight": self.orthogonal_reg_weight,
            "gradient": self.gradient,
            "num_heads": self.num_heads,
            "separate_codebook_per_head": self.separate_codebook_per_head,
            "stochastic_temperature": self.stochastic_temperature,
            "seed": self.seed,
        })
        return config
