"""Entropy coding of RVQ code indices with `constriction` range coding.

Each RVQ stage has its own categorical distribution over its ``K`` codes,
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
