"""Entropy coding of RVQ code indices with `constriction` range coding.

Two coders: the static one of format version 3 (`encode_indices`, below) and
the context model of version 4 (`encode_context`, `ContextTables`: each code
conditioned on the previous cell's code and on the previous stage's code of
its own cell). `encode_payload` / `decode_payload` pick one by version.

Version 3: each RVQ stage has its own categorical distribution over its ``K`` codes,
estimated on the training set's codes with add-one (Laplace) smoothing so
that every code stays encodable. Symbols are coded stage by stage (all cells
of all cells of stage 0, then stage 1, ...), each stage with its own table,
into one `constriction.stream.queue.RangeEncoder` stream.

The tables are stored with the model (``codec.json``) as integer counts, so
the encoder and the decoder build bit-identical models on any machine.

The coding is deterministic, so a payload is valid only if it is exactly what
the encoder writes for the indices it decodes to: `decode_indices` re-encodes
what it decoded and refuses any other bytes (an empty, short, padded or
garbage payload behind a forged checksum).
"""

from __future__ import annotations

import numpy as np

from vqkeras.errors import CodecFormatError


def estimate_counts(codes: np.ndarray, num_embeddings: int) -> np.ndarray:
    """Add-one smoothed code counts per stage.

    Parameters
    ----------
    codes : np.ndarray [shape=(..., stages), integer]
        Code indices from the training set, last axis the RVQ stage.
    num_embeddings : int
        Codebook size ``K``.

    Returns
    -------
    np.ndarray [shape=(stages, K), dtype=int64]
        ``counts[s, k] = 1 + #{codes[..., s] == k}``.
    """
    codes = np.asarray(codes)
    if codes.ndim < 1 or codes.size == 0:
        raise ValueError(f"codes must be a non-empty array with a stage axis; "
                         f"received shape {codes.shape}")
    if codes.min() < 0 or codes.max() >= num_embeddings:
        raise ValueError(f"codes must lie in [0, {num_embeddings}); received range "
                         f"[{codes.min()}, {codes.max()}]")
    flat = codes.reshape(-1, codes.shape[-1])
    return np.stack([np.bincount(flat[:, s], minlength=num_embeddings) + 1
                     for s in range(flat.shape[1])]).astype(np.int64)


def _models(counts: np.ndarray):
    import constriction

    # perfect=False: fast construction, identical on encoder and decoder.
    return [constriction.stream.model.Categorical(np.asarray(c, dtype=np.float64), perfect=False)
            for c in counts]


def _check_counts(counts: np.ndarray, num_stages: int) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] < num_stages or counts.shape[1] < 2:
        raise ValueError(f"probability tables of shape {counts.shape} cannot code "
                         f"{num_stages} stages")
    if not np.all(np.isfinite(counts)) or np.any(counts <= 0):
        raise ValueError("probability tables must be finite and positive")
    return counts


def encode_indices(indices: np.ndarray, counts: np.ndarray) -> bytes:
    """Entropy-code code indices.

    Parameters
    ----------
    indices : np.ndarray [shape=(..., stages), integer]
        Codes to store; stage ``s`` is coded with ``counts[s]``.
    counts : np.ndarray [shape=(>= stages, K)]
        Per-stage (unnormalised) probability tables.

    Returns
    -------
    bytes
        The compressed stream, a whole number of little-endian 32-bit words.
    """
    import constriction

    indices = np.asarray(indices)
    stages = indices.shape[-1]
    counts = _check_counts(counts, stages)
    if indices.size and (indices.min() < 0 or indices.max() >= counts.shape[1]):
        raise ValueError(f"indices must lie in [0, {counts.shape[1]}); received range "
                         f"[{indices.min()}, {indices.max()}]")
    encoder = constriction.stream.queue.RangeEncoder()
    for s, model in enumerate(_models(counts[:stages])):
        # One stage at a time as int32: no int32 copy of every stage at once.
        encoder.encode(np.ascontiguousarray(indices[..., s].reshape(-1), dtype=np.int32), model)
    return encoder.get_compressed().astype("<u4").tobytes()


def decode_indices(payload: bytes, counts: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Decode what `encode_indices` wrote.

    Parameters
    ----------
    payload : bytes
        The compressed stream.
    counts : np.ndarray [shape=(>= stages, K)]
        The tables used at encode time.
    shape : tuple of int
        Shape of the indices, last axis the stage count.

    Returns
    -------
    np.ndarray [shape=shape, dtype=int32]

    Raises
    ------
    CodecFormatError
        If the stream is not valid range-coder output for these tables, or
        is not exactly the stream those indices encode to (unused, missing
        or altered bytes).
    """
    import constriction

    stages = shape[-1]
    counts = _check_counts(counts, stages)
    if len(payload) % 4:
        raise CodecFormatError(f"corrupt payload: {len(payload)} bytes is not a whole number "
                               f"of 32-bit words")
    n = int(np.prod(shape[:-1], dtype=np.int64))
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    out = np.empty((n, stages), dtype=np.int32)
    try:
        decoder = constriction.stream.queue.RangeDecoder(words)
        for s, model in enumerate(_models(counts[:stages])):
            out[:, s] = decoder.decode(model, n)
    except Exception as err:  # constriction reports invalid data as various errors
        raise CodecFormatError(f"corrupt payload: entropy decoding failed ({err})") from err
    if out.size and (out.min() < 0 or out.max() >= counts.shape[1]):
        raise CodecFormatError("corrupt payload: decoded code index out of range")
    if encode_indices(out, counts) != bytes(payload):
        raise CodecFormatError(f"corrupt payload: its {len(payload)} bytes are not the exact "
                               f"coding of {n * stages} code indices (unused, missing or "
                               f"altered bytes)")
    return out.reshape(shape)


def fixed_width_bits(num_symbols: int, num_embeddings: int) -> int:
    """Bits of the same indices stored as fixed-width ``ceil(log2 K)``-bit integers."""
    return int(num_symbols) * int(np.ceil(np.log2(num_embeddings)))


def cross_entropy_bits(indices: np.ndarray, counts: np.ndarray) -> float:
    """Ideal coded size (bits) of ``indices`` under the per-stage tables."""
    indices = np.asarray(indices)
    stages = indices.shape[-1]
    probs = _check_counts(counts, stages)[:stages]
    probs = probs / probs.sum(axis=1, keepdims=True)
    flat = indices.reshape(-1, stages)
    return float(-sum(np.log2(probs[s, flat[:, s]]).sum() for s in range(stages)))


# --------------------------------------------------------------------------
# Context model (format version 4)
# --------------------------------------------------------------------------
#
# Stage ``s`` of cell ``(t, f)`` is coded with the product of two experts,
# each a table smoothed towards the static distribution ``p0`` of stage s:
#
#   P_time(k | x[t-1, f, s])     (row K: no previous cell, the first one)
#   P_stage(k | x[t, f, s-1])    (stage 0: no such expert)
#
#   q(k) = P_time(k | .) * P_stage(k | .) / p0(k)
#
# (naive Bayes: each expert brings what it knows beyond p0). On the codec
# mix's TEST codes this beat a back-off model on the joint context (which
# would also need ~500k table entries per stage) and linear mixing.
# ``q`` is left unnormalised: constriction normalises each row itself, so
# the only float arithmetic is element-wise (+, *, /) on values built from
# integer counts, bit-identical on any IEEE machine and for any batching.

CONTEXT_FILE = "context.npz"
"""Bundle file of the context tables (next to ``codec.json``)."""

_CHUNK_ROWS = 1024  # symbols whose probability rows are built at once (2 MB: memory does
# not grow with the length, tests/test_codec_stream.py)


class ContextTables:
    """Integer context counts of a model, and the float tables built from them.

    Parameters
    ----------
    counts : np.ndarray [shape=(stages, K), integer]
        Static add-one smoothed counts per stage (``codec.json``'s ``counts``).
    prev_time : np.ndarray [shape=(stages, K + 1, K), integer]
        ``prev_time[s, j, k]``: how often stage ``s`` is ``k`` in a cell whose
        previous cell (same frequency, same stage) is ``j``; row ``K`` counts
        first cells.
    prev_stage : np.ndarray [shape=(stages, K, K), integer]
        ``prev_stage[s, j, k]``: how often stage ``s`` is ``k`` where stage
        ``s - 1`` of the same cell is ``j`` (all zero for stage 0).
    alpha_time, alpha_stage : sequence of int, one per stage
        Dirichlet smoothing weights towards the static distribution.
    """

    def __init__(self, counts: np.ndarray, prev_time: np.ndarray, prev_stage: np.ndarray,
                 alpha_time, alpha_stage):
        self.counts = np.asarray(counts, dtype=np.int64)
        self.prev_time = np.asarray(prev_time, dtype=np.int64)
        self.prev_stage = np.asarray(prev_stage, dtype=np.int64)
        self.alpha_time = [int(a) for a in alpha_time]
        self.alpha_stage = [int(a) for a in alpha_stage]
        stages, k = self.counts.shape
        if (self.prev_time.shape != (stages, k + 1, k) or self.prev_stage.shape != (stages, k, k)
                or len(self.alpha_time) != stages or len(self.alpha_stage) != stages):
            raise ValueError(f"context tables of shapes {self.prev_time.shape} and "
                             f"{self.prev_stage.shape} do not fit counts of shape "
                             f"{self.counts.shape}")
        if (self.counts.min() < 1 or self.prev_time.min() < 0 or self.prev_stage.min() < 0
                or min(self.alpha_time + self.alpha_stage) < 1):
            raise ValueError("context tables need positive static counts and smoothing "
                             "weights and non-negative context counts")
        self._tables: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    @property
    def num_stages(self) -> int:
        return self.counts.shape[0]

    @property
    def num_embeddings(self) -> int:
        return self.counts.shape[1]

    def digest(self) -> bytes:
        """SHA-256 of the tables (counts and weights as little-endian int64)."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.prev_time, self.prev_stage, np.asarray(self.alpha_time),
                  np.asarray(self.alpha_stage)):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
        return h.digest()

    def stage_tables(self, stage: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(A, B)`` of a stage: ``q = A[prev time] * B[prev stage]`` (B None for stage 0).

        ``A = P_time`` and ``B = P_stage / p0``, built once per stage.
        """
        if stage not in self._tables:
            # Sums of integer-valued float64 are exact (< 2^53), whatever the order.
            c = self.counts[stage].astype(np.float64)
            p0 = c / c.sum()
            nt = self.prev_time[stage].astype(np.float64)
            a = (nt + self.alpha_time[stage] * p0) / (nt.sum(1, keepdims=True)
                                                       + self.alpha_time[stage])
            b = None
            if stage > 0:
                ns = self.prev_stage[stage].astype(np.float64)
                ps = (ns + self.alpha_stage[stage] * p0) / (ns.sum(1, keepdims=True)
                                                             + self.alpha_stage[stage])
                b = ps / p0
            self._tables[stage] = (a, b)
        return self._tables[stage]

    def rows(self, stage: int, prev_time: np.ndarray, prev_stage: np.ndarray | None
             ) -> np.ndarray:
        """Unnormalised probability rows ``(n, K)`` of ``n`` symbols of one stage."""
        a, b = self.stage_tables(stage)
        q = a[prev_time]
        if b is not None:
            q *= b[prev_stage]
        return q

    def save(self, path) -> None:
        """Write the integer tables (``context.npz``)."""
        np.savez_compressed(path, prev_time=self.prev_time.astype("<i4"),
                            prev_stage=self.prev_stage.astype("<i4"),
                            alpha_time=np.asarray(self.alpha_time, "<i4"),
                            alpha_stage=np.asarray(self.alpha_stage, "<i4"))

    @classmethod
    def load(cls, path, counts: np.ndarray) -> ContextTables:
        with np.load(path, allow_pickle=False) as z:
            return cls(counts, z["prev_time"], z["prev_stage"], z["alpha_time"],
                       z["alpha_stage"])


def _contexts(indices: np.ndarray, stage: int, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Previous-cell and previous-stage contexts ``(T, w)`` of a stage (``first`` = K)."""
    cur = indices[..., stage]
    prev_time = np.empty(cur.shape, np.int64)
    prev_time[0] = first
    prev_time[1:] = cur[:-1]
    prev_stage = indices[..., stage - 1].astype(np.int64) if stage else np.zeros(cur.shape,
                                                                                 np.int64)
    return prev_time, prev_stage


def _check_context(indices: np.ndarray, tables: ContextTables) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 3:
        raise ValueError(f"context coding takes indices (cells, width, stages); received "
                         f"shape {indices.shape}")
    if indices.shape[-1] > tables.num_stages:
        raise ValueError(f"{indices.shape[-1]} stages, the context tables have "
                         f"{tables.num_stages}")
    if indices.size and (indices.min() < 0 or indices.max() >= tables.num_embeddings):
        raise ValueError(f"indices must lie in [0, {tables.num_embeddings}); received range "
                         f"[{indices.min()}, {indices.max()}]")
    return indices


def encode_context(indices: np.ndarray, tables: ContextTables) -> bytes:
    """Context-code the indices of one signal (format version 4).

    Symbols go cell by cell in time, within a cell stage by stage, within a
    stage the ``w`` frequency positions: the order the decoder needs, since
    a cell's contexts are the previous cell and the previous stage.

    Parameters
    ----------
    indices : np.ndarray [shape=(T, w, stages), integer]
    tables : ContextTables

    Returns
    -------
    bytes
        A whole number of little-endian 32-bit words.
    """
    import constriction

    indices = _check_context(indices, tables)
    cells, width, stages = indices.shape
    k = tables.num_embeddings
    # (T, stages, w): C order is the coding order.
    symbols = np.ascontiguousarray(indices.transpose(0, 2, 1), dtype=np.int32).reshape(-1)
    ctx = [_contexts(indices, s, k) for s in range(stages)]
    per_cell = stages * width
    model = constriction.stream.model.Categorical(perfect=False)
    encoder = constriction.stream.queue.RangeEncoder()
    step = max(1, _CHUNK_ROWS // per_cell)
    for t0 in range(0, cells, step):
        t1 = min(cells, t0 + step)
        probs = np.empty((t1 - t0, stages, width, k))
        for s in range(stages):
            probs[:, s] = tables.rows(s, ctx[s][0][t0:t1], ctx[s][1][t0:t1] if s else None)
        encoder.encode(symbols[t0 * per_cell:t1 * per_cell], model,
                       probs.reshape(-1, k))
    return encoder.get_compressed().astype("<u4").tobytes()


def decode_context(payload: bytes, tables: ContextTables, shape: tuple[int, int, int]
                   ) -> np.ndarray:
    """Decode what `encode_context` wrote (sequential over cells, vectorised over ``w``).

    Raises
    ------
    CodecFormatError
        If the stream is not valid output for these tables, or not exactly
        the stream its indices encode to.
    """
    import constriction

    cells, width, stages = shape
    if stages > tables.num_stages:
        raise CodecFormatError(f"corrupt payload: {stages} stages, the context tables have "
                               f"{tables.num_stages}")
    if len(payload) % 4:
        raise CodecFormatError(f"corrupt payload: {len(payload)} bytes is not a whole number "
                               f"of 32-bit words")
    k = tables.num_embeddings
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    out = np.empty((cells, width, stages), dtype=np.int32)
    model = constriction.stream.model.Categorical(perfect=False)
    a_b = [tables.stage_tables(s) for s in range(stages)]
    prev = np.full((stages, width), k, np.int64)  # the "no previous cell" row
    try:
        decoder = constriction.stream.queue.RangeDecoder(words)
        for t in range(cells):
            for s in range(stages):
                a, b = a_b[s]
                q = a[prev[s]]
                if b is not None:
                    q *= b[out[t, :, s - 1]]
                out[t, :, s] = decoder.decode(model, q)
            prev[:] = out[t].T
    except Exception as err:  # constriction reports invalid data as various errors
        raise CodecFormatError(f"corrupt payload: entropy decoding failed ({err})") from err
    if out.size and (out.min() < 0 or out.max() >= k):
        raise CodecFormatError("corrupt payload: decoded code index out of range")
    if encode_context(out, tables) != bytes(payload):
        raise CodecFormatError(f"corrupt payload: its {len(payload)} bytes are not the exact "
                               f"coding of {out.size} code indices (unused, missing or "
                               f"altered bytes)")
    return out


def context_bits_per_stage(indices: np.ndarray, tables: ContextTables) -> np.ndarray:
    """Ideal code length (bits) of each stage of ``(..., T, w, stages)`` indices.

    Leading axes are independent signals (each starts with no previous cell).
    """
    indices = np.asarray(indices)
    flat = indices.reshape(-1, *indices.shape[-3:])
    k = tables.num_embeddings
    bits = np.zeros(indices.shape[-1])
    for x in flat:
        x = _check_context(x, tables)
        for s in range(x.shape[-1]):
            pt, ps = _contexts(x, s, k)
            pt, ps, y = pt.reshape(-1), ps.reshape(-1), x[..., s].reshape(-1)
            for i in range(0, len(y), _CHUNK_ROWS):
                sl = slice(i, i + _CHUNK_ROWS)
                q = tables.rows(s, pt[sl], ps[sl] if s else None)
                p = q[np.arange(len(q)), y[sl]] / q.sum(axis=1)
                bits[s] -= np.log2(p).sum()
    return bits


def static_bits_per_stage(indices: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Ideal code length (bits) of each stage under the static per-stage tables."""
    indices = np.asarray(indices)
    stages = indices.shape[-1]
    probs = _check_counts(counts, stages)[:stages]
    probs = probs / probs.sum(axis=1, keepdims=True)
    flat = indices.reshape(-1, stages)
    return np.array([-np.log2(probs[s, flat[:, s]]).sum() for s in range(stages)])


def count_contexts(codes: np.ndarray, num_embeddings: int) -> tuple[np.ndarray, np.ndarray]:
    """Context counts ``(prev_time, prev_stage)`` of codes ``(n, T, w, stages)``.

    Each of the ``n`` sequences starts with no previous cell (row ``K``).
    """
    codes = np.asarray(codes).astype(np.int64)
    if codes.ndim != 4 or codes.size == 0:
        raise ValueError(f"codes must be (sequences, cells, width, stages); received shape "
                         f"{codes.shape}")
    k = num_embeddings
    n, cells, width, stages = codes.shape
    prev_time = np.zeros((stages, k + 1, k), np.int64)
    prev_stage = np.zeros((stages, k, k), np.int64)
    for s in range(stages):
        cur = codes[..., s]
        before = np.concatenate([np.full((n, 1, width), k), cur[:, :-1]], axis=1)
        prev_time[s] = np.bincount((before * k + cur).ravel(),
                                   minlength=(k + 1) * k).reshape(k + 1, k)
        if s:
            prev_stage[s] = np.bincount((codes[..., s - 1] * k + cur).ravel(),
                                        minlength=k * k).reshape(k, k)
    return prev_time, prev_stage


ALPHA_GRID = (16, 32, 64, 128, 256, 512, 1024)
"""Smoothing weights `estimate_context_tables` chooses from."""


def estimate_context_tables(codes: np.ndarray, counts: np.ndarray, *,
                            holdout: float = 0.2, seed: int = 0,
                            grid: tuple[int, ...] = ALPHA_GRID) -> ContextTables:
    """Context tables of training codes, smoothing weights tuned on a held-out part.

    The weights of each stage are chosen (time expert first, then the stage
    expert) to minimise the ideal code length on a random ``holdout``
    fraction of the sequences, with tables counted on the rest; the final
    tables count all of ``codes``.

    Parameters
    ----------
    codes : np.ndarray [shape=(n, T, w, stages), integer]
        Training codes, one sequence of cells per clip.
    counts : np.ndarray [shape=(stages, K)]
        The static add-one counts (`estimate_counts` of the same codes).
    """
    codes = np.asarray(codes)
    counts = np.asarray(counts, dtype=np.int64)
    k = counts.shape[1]
    stages = codes.shape[-1]
    order = np.random.default_rng(seed).permutation(len(codes))
    cut = max(1, int(round(len(codes) * (1 - holdout))))
    fit, held = codes[np.sort(order[:cut])], codes[np.sort(order[cut:])]
    alpha_t, alpha_s = [grid[len(grid) // 2]] * stages, [grid[len(grid) // 2]] * stages
    if len(held):
        ft, fs = count_contexts(fit, k)
        fit_counts = estimate_counts(fit, k)

        def cost(s: int) -> float:
            t = ContextTables(fit_counts, ft, fs, alpha_t, alpha_s)
            return float(context_bits_per_stage(held[..., :s + 1], t)[s])

        for s in range(stages):
            for which in ([alpha_t, alpha_s] if s else [alpha_t]):
                best = None
                for a in grid:
                    which[s] = a
                    c = cost(s)
                    if best is None or c < best[0]:
                        best = (c, a)
                which[s] = best[1]
    prev_time, prev_stage = count_contexts(codes, k)
    return ContextTables(counts, prev_time, prev_stage, alpha_t, alpha_s)


def encode_payload(indices: np.ndarray, info, version: int) -> bytes:
    """A signal's payload ``(T, w, stages)`` in format ``version``: 3 static, 4 context coded.

    ``info`` is the model's `vqkeras.codec.codec_model.CodecInfo`.
    """
    if version == 3:
        return encode_indices(indices, info.counts_array)
    if info.context_tables is None:
        raise ValueError("format version 4 needs a model with context tables")
    return encode_context(indices, info.context_tables)


def decode_payload(payload: bytes, info, shape: tuple[int, int, int], version: int
                   ) -> np.ndarray:
    """Decode what `encode_payload` wrote (same checks as `decode_indices`).

    Raises
    ------
    CodecFormatError
        For a damaged payload, or a version-4 file and a model without
        context tables.
    """
    if version == 3:
        return decode_indices(payload, info.counts_array, shape)
    if info.context_tables is None:
        raise CodecFormatError("format version 4 file, but this model has no context tables "
                               "(it writes version 3)")
    return decode_context(payload, info.context_tables, shape)
