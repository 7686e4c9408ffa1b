"""Fuzzing the .vqz reader: damaged files raise CodecFormatError and nothing else.

Valid files are built from real entropy-coded indices for a synthetic model
bundle (no neural network: the reader is tested up to entropy decoding and
shape checks, which is everything that parses untrusted bytes).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vqkeras.codec import container, entropy
from vqkeras.codec.codec_model import CodecInfo
from vqkeras.codec.framing import expected_layout
from vqkeras.codec.unpack import read_vqz
from vqkeras.errors import CodecFormatError

K = 64
STAGES = 3
GRID = (4, 8)  # (cells along time in the training codes, width)


def _info() -> CodecInfo:
    rng = np.random.default_rng(1)
    train = np.stack([rng.choice(K, size=(50, *GRID), p=rng.dirichlet(np.full(K, 0.2)))
                      for _ in range(STAGES)], axis=-1)
    return CodecInfo(spectrogram=dict(sample_rate=16000, frame_length=512, frame_step=128,
                                      duration=4.0, dynamic_range_db=100.0),
                     time_multiple=16, grid=GRID, num_stages=STAGES, num_embeddings=K,
                     counts=entropy.estimate_counts(train, K).tolist(),
                     weights_sha256="ab" * 32)


INFO = _info()


def _valid_file(sample_rate: int, num_samples: int, stages: tuple[int, ...], mode: int,
                seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    cells, segments = expected_layout(INFO, sample_rate, num_samples)
    payloads, gains = [], []
    for s in stages:
        indices = rng.integers(0, K, size=(cells, GRID[1], s))
        payloads.append(entropy.encode_indices(indices, INFO.counts_array) if s else b"")
        gains.append(rng.integers(0, 255, size=segments) if s else np.full(segments, 255))
    header = container.VQZHeader(model_id=INFO.model_id, sample_rate=sample_rate,
                                 channels=1 if mode == container.MONO else 2,
                                 num_samples=num_samples, num_cells=cells, num_segments=segments,
                                 grid_width=GRID[1], stages=stages, mode=mode,
                                 version=INFO.format_version)  # 3: static tables
    loudness = rng.integers(-128, 128, size=(len(stages), segments)).astype(np.int8)
    return container.pack(header, np.array(gains, np.uint8), loudness, payloads)


VALID = [_valid_file(16000, 64000, (3,), container.MONO, 0),
         _valid_file(44100, 286_651, (2, 1), container.MID_SIDE, 1),
         _valid_file(8000, 5, (1,), container.MONO, 2),
         _valid_file(48000, 100_000, (0, 3), container.LEFT_RIGHT, 3)]


def test_valid_files_decode():
    for data in VALID:
        header, gains, loudness, indices = read_vqz(data, INFO)
        for codes, s in zip(indices, header.stages):
            assert (codes is None) == (s == 0)
            if s:
                assert codes.shape == (header.num_cells, GRID[1], s)
        assert gains.shape == loudness.shape == (header.coded_channels, header.num_segments)


mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                                  st.integers(0, 7)), min_size=1, max_size=4)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.floats(0, 1, exclude_max=True), st.integers(1, 8)),
    st.tuples(st.just("overwrite"), st.floats(0, 1, exclude_max=True),
              st.binary(min_size=1, max_size=8)),
)


def _mutate(data: bytes, op) -> bytes:
    out = bytearray(data)
    kind = op[0]
    if kind == "truncate":
        return bytes(out[:int(op[1] * len(out))])
    if kind == "flip":
        for where, bit in op[1]:
            out[int(where * len(out))] ^= 1 << bit
    elif kind == "insert":
        pos = int(op[1] * len(out))
        out[pos:pos] = op[2]
    elif kind == "delete":
        pos = int(op[1] * len(out))
        del out[pos:pos + op[2]]
    else:
        pos = int(op[1] * len(out))
        out[pos:pos + len(op[2])] = op[2]
    return bytes(out)


def _check(data: bytes) -> None:
    try:
        header, gains, loudness, indices = read_vqz(data, INFO)
    except CodecFormatError as err:
        assert str(err)  # a message, on one line
        assert "\n" not in str(err)
        return
    # Only possible when the mutation left a consistent file: shapes must agree.
    for codes, s in zip(indices, header.stages):
        if s:
            assert codes.shape == (header.num_cells, GRID[1], s)
            assert codes.min() >= 0 and codes.max() < K


@settings(max_examples=2500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(VALID) - 1), op=mutation)
def test_mutated_files_raise_only_codec_format_error(which, op):
    mutated = _mutate(VALID[which], op)
    if mutated == VALID[which]:
        return
    with pytest.raises(CodecFormatError):
        read_vqz(mutated, INFO)


@settings(max_examples=2500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(VALID) - 1), op=mutation)
def test_mutated_files_with_fixed_crc(which, op):
    # A forger (or a bug) that recomputes the CRC: the header bounds, the
    # model checks and the entropy decoder still see the damage.
    mutated = bytearray(_mutate(VALID[which], op))
    if len(mutated) >= container.HEADER_SIZE + 4:
        mutated[-4:] = struct.pack("<I", zlib.crc32(bytes(mutated[:-4])))
    _check(bytes(mutated))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.binary(max_size=200))
def test_random_bytes(data):
    _check(container.MAGIC + data)
    _check(data)


def _with_payload(data: bytes, payload: bytes) -> bytes:
    """The same file with another first payload, its length field and CRC forged to match."""
    header, lengths = container.read_header(data)
    side = container.side_bytes(header)
    start = container.HEADER_SIZE + side
    rest = data[start + lengths[0]:-4]
    body = bytearray(data[:start]) + payload + rest
    body[52:56] = struct.pack("<I", len(payload))  # the first payload's length field
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


@pytest.mark.parametrize("which", [0, 1, 2])
def test_payload_must_be_consumed_exactly(which):
    data = VALID[which]
    header, _, _, payloads = container.unpack(data)
    payload = payloads[0]
    rng = np.random.default_rng(which)
    forged = {
        "empty": b"",
        "garbage": rng.integers(0, 256, len(payload), dtype=np.uint8).tobytes(),
        "one word of garbage": b"\x12\x34\x56\x78",
        "an extra word": payload + b"\x00\x00\x00\x00",
        "a word short": payload[:-4],
    }  # (all zeros is not among them: it is the exact coding of "every index is 0")
    for name, bad in forged.items():
        if bad == payload:
            continue
        with pytest.raises(CodecFormatError, match="corrupt payload|corrupt .vqz header") as err:
            read_vqz(_with_payload(data, bad), INFO)
        assert "\n" not in str(err.value), name
    # The genuine payload through the same forging path still decodes.
    assert read_vqz(_with_payload(data, payload), INFO)[3][0].shape[-1] == header.stages[0]
