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
    data = container.pack(header, np.array([3, 255], np.uint8), payload,
                          np.array([-128, 127], np.int8))
    assert len(data) == container.HEADER_SIZE + 2 * 2 + 40 + 4 == container.file_size(2, 40)
    assert data[:4] == container.MAGIC
    assert struct.unpack_from("<H", data, 4) == (2,)  # version 2
    back, gains, loudness, back_payload = container.unpack(data)
    assert back == header and back.version == 2
    assert gains.tolist() == [3, 255]
    assert loudness.tolist() == [-128, 127]
    assert back_payload == payload


def _v1_file(payload: bytes = b"\x05\x06\x07\x08") -> bytes:
    """A version 1 file built from the documented layout: no loudness bytes."""
    body = struct.pack("<4sHH16sIHBBQIHHI", container.MAGIC, 1, 0, bytes(range(16)), 44100, 2,
                       3, 0, 286650, 2, 8, 16, len(payload)) + bytes([7, 9]) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def test_version_1_files_still_read():
    header, gains, loudness, payload = container.unpack(_v1_file())
    assert header.version == 1 and header.num_windows == 2 and header.channels == 2
    assert gains.tolist() == [7, 9] and loudness.tolist() == [0, 0]
    assert payload == b"\x05\x06\x07\x08"
    # A version 1 file is one byte per window shorter: its own length rule applies.
    with pytest.raises(CodecFormatError, match="truncated"):
        container.unpack(_v1_file()[:-5] + _v1_file()[-4:])
    # Writing is version 2 only.
    with pytest.raises(ValueError, match="version 2"):
        container.pack(dataclasses.replace(header), np.zeros(2, np.uint8), payload)


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
    for version in (0, 3, 7):
        data[4:6] = struct.pack("<H", version)
        with pytest.raises(CodecFormatError, match=f"version {version} .*reads versions 1, 2"):
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
