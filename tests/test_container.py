"""The .vqz container: round trip, bounds, and each kind of damage named clearly."""

from __future__ import annotations

import dataclasses
import struct
import zlib

import numpy as np
import pytest

from vqkeras.codec import container
from vqkeras.codec.container import VQZHeader
from vqkeras.errors import CodecFormatError


def _header(**kw) -> VQZHeader:
    fields = dict(model_id=bytes(range(16)), sample_rate=44100, channels=2,
                  num_samples=286650, num_cells=51, num_segments=2, grid_width=16,
                  stages=(3, 2), mode=container.MID_SIDE, link=container.LINK_SAME)
    fields.update(kw)
    return VQZHeader(**fields)


def _file(header=None, payloads=(b"\x01\x02\x03\x04" * 5, b"\x09\x08\x07\x06")) -> bytes:
    header = header or _header()
    shape = (header.coded_channels, header.num_segments)
    gains = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    return container.pack(header, gains, np.zeros(shape, np.int8), list(payloads))


def _recrc(data: bytearray) -> bytes:
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    return bytes(data)


def test_round_trip_and_size():
    header = _header()
    payloads = [bytes(range(40)), bytes(range(8))]
    gains = np.array([[3, 255], [0, 7]], np.uint8)
    loudness = np.array([[-128, 127], [1, -1]], np.int8)
    data = container.pack(header, gains, loudness, payloads)
    assert len(data) == container.HEADER_SIZE + 2 * 2 * 2 + 48 + 4 == container.file_size(2, 2, 48)
    assert data[:4] == container.MAGIC
    assert struct.unpack_from("<H", data, 4) == (4,)  # version 4 unless the header says 3
    back, back_gains, back_loudness, back_payloads = container.unpack(data)
    assert back == header and back.version == 4 and back.coded_channels == 2
    # The layout is the same in version 3 (only the payloads' coding differs).
    old = container.pack(dataclasses.replace(header, version=3), gains, loudness, payloads)
    assert old[:4] + old[6:-4] == data[:4] + data[6:-4] and container.unpack(old)[0].version == 3
    assert back_gains.tolist() == gains.tolist()
    assert back_loudness.tolist() == loudness.tolist()
    assert back_payloads == payloads


def test_mono_and_a_silent_second_signal():
    mono = _header(channels=1, mode=container.MONO, link=container.LINK_NONE, stages=(4,))
    data = container.pack(mono, np.zeros((1, 2), np.uint8), np.zeros((1, 2), np.int8),
                          [b"\x00" * 8])
    assert container.unpack(data)[0] == mono
    # A silent side: 0 stages, an empty payload; a non-empty one is refused.
    silent = _header(stages=(4, 0), link=container.LINK_NONE)
    data = container.pack(silent, np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.int8),
                          [b"\x00" * 8, b""])
    assert container.unpack(data)[3] == [b"\x00" * 8, b""]
    with pytest.raises(ValueError, match="empty iff 0 stages"):
        container.pack(silent, np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.int8),
                       [b"\x00" * 8, b"\x00" * 4])
    with pytest.raises(CodecFormatError, match="at least one coded"):
        container.validate_header(_header(stages=(0, 0)))
    with pytest.raises(CodecFormatError, match="mid/side coding of 3 channels"):
        container.validate_header(_header(channels=3))
    with pytest.raises(CodecFormatError, match="phase link"):
        container.validate_header(_header(channels=1, mode=container.MONO, stages=(4,)))


def test_old_versions_are_refused_with_a_reason():
    # A version 2 file from the documented old layout (independent 4-s windows).
    body = struct.pack("<4sHH16sIHBBQIHHI", container.MAGIC, 2, 0, bytes(range(16)), 44100, 2,
                       3, 0, 286650, 2, 8, 16, 4) + bytes([7, 9, 0, 0]) + b"\x05\x06\x07\x08"
    old = body + struct.pack("<I", zlib.crc32(body))
    for data in (old, old[:8]):
        with pytest.raises(CodecFormatError, match="version 2 .*independent 4-s windows.*"
                                                   "decode it with the vqkeras that wrote it"):
            container.unpack(data)
    with pytest.raises(ValueError, match="versions 3, 4"):
        container.pack(dataclasses.replace(_header(), version=2), np.zeros((2, 2), np.uint8),
                       np.zeros((2, 2), np.int8), [b"", b""])


def test_loudness_codes_round_trip():
    for db in [-20.0, -0.3, 0.0, 0.12, 6.0, 31.75]:
        code = container.quantize_loudness(db)
        assert abs(20 * np.log10(container.dequantize_loudness(code)) - db) <= 0.125 + 1e-9
    assert container.quantize_loudness(100.0) == 127
    assert container.quantize_loudness(-100.0) == -128
    assert container.quantize_loudness(float("nan")) == 0


@pytest.mark.parametrize("cut", [0, 3, 10, container.HEADER_SIZE, -1, -5])
def test_truncated(cut):
    data = _file()
    with pytest.raises(CodecFormatError, match="truncated|magic"):
        container.unpack(data[:cut] if cut >= 0 else data[:len(data) + cut])


def test_trailing_bytes():
    with pytest.raises(CodecFormatError, match="unexpected bytes"):
        container.unpack(_file() + b"\x00")


def test_wrong_magic():
    with pytest.raises(CodecFormatError, match="magic"):
        container.unpack(b"RIFF" + _file()[4:])


def test_wrong_version_named():
    data = bytearray(_file())
    for version in (0, 5, 7):
        data[4:6] = struct.pack("<H", version)
        with pytest.raises(CodecFormatError, match=f"version {version} .*reads versions 3, 4"):
            container.unpack(_recrc(data))


def test_bit_flips_anywhere_fail_the_checksum_or_a_bound():
    data = _file()
    for pos in range(len(data)):
        for bit in (0, 7):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            with pytest.raises(CodecFormatError):
                container.unpack(bytes(bad))


def test_crc_byte_flip():
    data = bytearray(_file())
    data[-1] ^= 0xFF
    with pytest.raises(CodecFormatError, match="CRC32"):
        container.unpack(bytes(data))


@pytest.mark.parametrize("field, value, message", [
    ("sample_rate", 0, "sample rate"),
    ("sample_rate", 10_000_000, "sample rate"),
    ("channels", 0, "channel"),
    ("channels", 1000, "channel"),
    ("num_samples", 0, "sample count"),
    ("num_samples", 2**40, "sample count"),
    ("num_cells", 0, "cell count"),
    ("num_cells", 10**8, "cell count"),
    ("num_segments", 0, "segment count"),
    ("num_segments", 10**6, "segment count"),
    ("grid_width", 0, "grid width"),
    ("grid_width", 4096, "grid width"),
    ("stages", (0, 0), "stage counts"),
    ("stages", (200, 1), "stage counts"),
    ("mode", 9, "channel mode"),
    ("link", 2, "reserved bits|phase link"),
])
def test_header_bounds_checked_before_allocation(field, value, message):
    # Forge the header bytes directly (pack refuses out-of-bound values too),
    # with a correct CRC so only the bound can reject it.
    h = dataclasses.replace(_header(), **{field: value})
    head = struct.pack("<4sHH16sIHBBQIIHBBII", container.MAGIC, container.VERSION, h.link,
                       h.model_id, h.sample_rate, h.channels, h.mode, 2, h.num_samples,
                       h.num_cells, h.num_segments, h.grid_width, h.stages[0] % 256,
                       h.stages[1] % 256, 0, 0)
    data = bytearray(head + bytes(4))
    with pytest.raises(CodecFormatError, match=message):
        container.unpack(_recrc(data))
    with pytest.raises(CodecFormatError, match=message):
        container.validate_header(h)


def test_gain_quantisation_rounds_up_and_marks_silence():
    for peak in [1.0, 0.9, 0.5, 1e-3, 3.2e-6]:
        code = container.quantize_gain(peak)
        gain = container.dequantize_gain(code)
        assert peak <= gain <= peak * 10 ** (container.GAIN_STEP_DB / 20) + 1e-12
    assert container.quantize_gain(0.0) == container.GAIN_SILENT
    assert container.quantize_gain(1e-9) == container.GAIN_SILENT
    assert container.dequantize_gain(container.GAIN_SILENT) == 0.0
    assert container.quantize_gain(2.5) == 0
    # Codes read from the file are numpy uint8: no wrap-around on negation.
    assert container.dequantize_gain(np.uint8(40)) == pytest.approx(0.1)
