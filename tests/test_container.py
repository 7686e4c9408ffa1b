"""The .vqz container: round trip, bounds, and each kind of damage named clearly."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from vqkeras.codec import container
from vqkeras.codec.container import VQZHeader
from vqkeras.errors import CodecFormatError


def _header(**kw) -> VQZHeader:
    fields = dict(model_id=bytes(range(16)), sample_rate=44100, channels=2,
                  num_samples=286650, num_windows=2, grid=(8, 16), num_stages=3)
    fields.update(kw)
    return VQZHeader(**fields)


def _file(header=None, payload=b"\x01\x02\x03\x04" * 5) -> bytes:
    header = header or _header()
    gains = np.arange(header.num_windows, dtype=np.uint8)
    return container.pack(header, gains, payload)


def _recrc(data: bytearray) -> bytes:
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    return bytes(data)


def test_round_trip_and_size():
    header = _header()
    payload = bytes(range(40))
    data = container.pack(header, np.array([3, 255], np.uint8), payload)
    assert len(data) == container.HEADER_SIZE + 2 + 40 + 4
    assert data[:4] == container.MAGIC
    back, gains, back_payload = container.unpack(data)
    assert back == header
    assert gains.tolist() == [3, 255]
    assert back_payload == payload


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
    data[4:6] = struct.pack("<H", 7)
    with pytest.raises(CodecFormatError, match="version 7"):
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
    ("num_windows", 0, "window count"),
    ("num_windows", 10**6, "window count"),
    ("grid", (4096, 4), "grid"),
    ("grid", (0, 4), "grid"),
    ("num_stages", 0, "stage"),
    ("num_stages", 200, "stage"),
])
def test_header_bounds_checked_before_allocation(field, value, message):
    # Forge the header bytes directly (pack refuses out-of-bound values too),
    # with a correct CRC so only the bound can reject it.
    h = _header()
    values = dict(sample_rate=h.sample_rate, channels=h.channels, num_samples=h.num_samples,
                  num_windows=h.num_windows, grid=h.grid, num_stages=h.num_stages)
    values[field] = value
    head = struct.pack("<4sHH16sIHBBQIHHI", container.MAGIC, container.VERSION, 0, h.model_id,
                       values["sample_rate"], values["channels"], values["num_stages"] % 256,
                       0, values["num_samples"], values["num_windows"], values["grid"][0],
                       values["grid"][1], 0)
    data = bytearray(head + bytes(4))
    with pytest.raises(CodecFormatError, match=message):
        container.unpack(_recrc(data))
    with pytest.raises(CodecFormatError, match=message):
        container.validate_header(VQZHeader(model_id=h.model_id, **values))


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
