"""Entropy coding of RVQ indices: exact round trip and fewer bits than fixed width."""

from __future__ import annotations

import numpy as np
import pytest

from vqkeras.codec import entropy
from vqkeras.errors import CodecFormatError


def _skewed_codes(rng, shape=(40, 8, 16), stages=3, k=256):
    # Codes of a trained RVQ are far from uniform: earlier stages more so.
    probs = [rng.dirichlet(np.full(k, 0.05 * (s + 1))) for s in range(stages)]
    return np.stack([rng.choice(k, size=shape, p=p) for p in probs], axis=-1).astype(np.int32)


def test_counts_are_add_one_smoothed(rng):
    codes = np.array([[0, 1], [0, 1], [2, 1]])
    counts = entropy.estimate_counts(codes, 4)
    assert counts.tolist() == [[3, 1, 2, 1], [1, 4, 1, 1]]
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        entropy.estimate_counts(np.array([[4]]), 4)


def test_round_trip_and_bits_saved(rng):
    train = _skewed_codes(rng)
    counts = entropy.estimate_counts(train, 256)
    codes = train[:5]
    payload = entropy.encode_indices(codes, counts)
    assert len(payload) % 4 == 0
    decoded = entropy.decode_indices(payload, counts, codes.shape)
    np.testing.assert_array_equal(decoded, codes)
    coded_bits = 8 * len(payload)
    fixed_bits = entropy.fixed_width_bits(codes.size, 256)
    ideal = entropy.cross_entropy_bits(codes, counts)
    # Range coding is within a couple of words of the ideal code length.
    assert ideal <= coded_bits <= ideal + 96
    assert coded_bits < 0.9 * fixed_bits


def test_fewer_stages_use_the_first_tables(rng):
    train = _skewed_codes(rng)
    counts = entropy.estimate_counts(train, 256)
    codes = train[:3, ..., :2]
    payload = entropy.decode_indices(entropy.encode_indices(codes, counts), counts, codes.shape)
    np.testing.assert_array_equal(payload, codes)


def test_out_of_range_index_rejected(rng):
    counts = np.ones((2, 16), np.int64)
    with pytest.raises(ValueError, match="16"):
        entropy.encode_indices(np.full((3, 2), 16), counts)


def test_garbage_payload_is_a_format_error_or_decodes_in_range(rng):
    counts = entropy.estimate_counts(_skewed_codes(rng), 256)
    raised = 0
    for _ in range(200):
        garbage = rng.integers(0, 256, size=4 * rng.integers(0, 20), dtype=np.uint8).tobytes()
        try:
            out = entropy.decode_indices(garbage, counts, (2, 8, 16, 3))
        except CodecFormatError:
            raised += 1
        else:
            assert out.shape == (2, 8, 16, 3) and out.min() >= 0 and out.max() < 256
    assert raised > 0
    with pytest.raises(CodecFormatError, match="32-bit"):
        entropy.decode_indices(b"abc", counts, (1, 3))
