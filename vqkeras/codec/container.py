"""The ``.vqz`` byte format: pack and unpack, with every field bounded.

The layout is documented byte by byte in ``docs/format.md``. All integers are
little-endian. Unpacking checks, in this order: length of the fixed header,
magic, version, flags, each header value against its bound (before anything
is allocated from it), the exact file length those values imply, and the
CRC32 of everything before the checksum. Only then are the gains, loudness
corrections and payload sliced out. Version 1 files (no loudness corrections)
are still read: their corrections are all zero. Any failure raises `vqkeras.errors.CodecFormatError` naming what
is wrong; no other exception escapes `unpack`.

Matching the header against a model (identity, grid, stages) is the job of
`vqkeras.codec.pipeline`, which knows the model.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from vqkeras.errors import CodecFormatError

MAGIC = b"\x89VQZ"
"""First four bytes of every .vqz file (a high-bit byte, like PNG, catches 7-bit mangling)."""

VERSION = 2
"""Format version written by this code."""
READ_VERSIONS = (1, 2)
"""Versions this code reads (1: no loudness corrections)."""

MODEL_ID_BYTES = 16

# Fixed header: magic, version u16, flags u16, model id (16 bytes),
# sample rate u32, channels u16, stages u8, reserved u8, samples u64,
# windows u32, grid h u16, grid w u16, payload length u32.
_HEADER = struct.Struct("<4sHH16sIHBBQIHHI")
HEADER_SIZE = _HEADER.size  # 52 bytes
CRC_SIZE = 4

# Bounds, checked before anything is allocated from a header value.
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64
MAX_DURATION_S = 4 * 3600  # four hours
MAX_WINDOWS = 16_384  # four hours of 1-s windows; ~18 h of the default 4-s windows
MAX_GRID_SIDE = 1024
MAX_GRID_CELLS = 16_384
MAX_STAGES = 32
MAX_SYMBOLS = 1 << 26  # windows * h * w * stages: at most 256 MB of int32 codes
MAX_PAYLOAD_BYTES = 1 << 28

GAIN_SILENT = 255
"""Gain code of an all-zero window (nothing is coded for it beyond its gain)."""
GAIN_STEP_DB = 0.5
"""Peak gains are stored as ``code = ceil(-20 log10(peak) / 0.5)``, 0..254."""
LOUDNESS_STEP_DB = 0.25
"""Loudness corrections (version 2) are signed bytes in 0.25-dB steps: -32 .. +31.75 dB."""


@dataclass(frozen=True)
class VQZHeader:
    """Decoded header fields of a .vqz file.

    Attributes
    ----------
    model_id : bytes
        16 bytes identifying the model weights (SHA-256 prefix).
    sample_rate : int
        Sample rate of the original input, restored at decode.
    channels : int
        Channel count of the original input (audio is coded as a mono downmix;
        the decoder writes this many identical channels).
    num_samples : int
        Samples per channel of the original input, at ``sample_rate``.
    num_windows : int
        Number of coded windows.
    grid : tuple of int
        Code grid ``(h, w)`` of one window.
    num_stages : int
        RVQ stages coded per grid cell.
    version : int
        Format version of the file (`VERSION` for files written now).
    """

    model_id: bytes
    sample_rate: int
    channels: int
    num_samples: int
    num_windows: int
    grid: tuple[int, int]
    num_stages: int
    version: int = VERSION

    @property
    def num_symbols(self) -> int:
        """Code indices in the payload: ``windows * h * w * stages``."""
        return self.num_windows * self.grid[0] * self.grid[1] * self.num_stages


def validate_header(header: VQZHeader) -> None:
    """Check every header field against its bound.

    Raises
    ------
    CodecFormatError
        Naming the first field out of range.
    """
    def bad(what: str) -> CodecFormatError:
        return CodecFormatError(f"corrupt .vqz header: {what}")

    if not isinstance(header.model_id, bytes) or len(header.model_id) != MODEL_ID_BYTES:
        raise bad(f"model id must be {MODEL_ID_BYTES} bytes")
    if not 1 <= header.sample_rate <= MAX_SAMPLE_RATE:
        raise bad(f"sample rate {header.sample_rate} outside 1..{MAX_SAMPLE_RATE}")
    if not 1 <= header.channels <= MAX_CHANNELS:
        raise bad(f"channel count {header.channels} outside 1..{MAX_CHANNELS}")
    max_samples = MAX_DURATION_S * header.sample_rate
    if not 1 <= header.num_samples <= max_samples:
        raise bad(f"sample count {header.num_samples} outside 1..{max_samples} "
                  f"({MAX_DURATION_S} s at {header.sample_rate} Hz)")
    if not 1 <= header.num_windows <= MAX_WINDOWS:
        raise bad(f"window count {header.num_windows} outside 1..{MAX_WINDOWS}")
    h, w = header.grid
    if not (1 <= h <= MAX_GRID_SIDE and 1 <= w <= MAX_GRID_SIDE and h * w <= MAX_GRID_CELLS):
        raise bad(f"code grid {h}x{w} too large (side <= {MAX_GRID_SIDE}, "
                  f"cells <= {MAX_GRID_CELLS})")
    if not 1 <= header.num_stages <= MAX_STAGES:
        raise bad(f"stage count {header.num_stages} outside 1..{MAX_STAGES}")
    if header.version not in READ_VERSIONS:
        raise CodecFormatError(f"unsupported .vqz format version {header.version} "
                               f"(this vqkeras reads versions {', '.join(map(str, READ_VERSIONS))})")
    if header.num_symbols > MAX_SYMBOLS:
        raise bad(f"{header.num_symbols} code indices exceed the limit of {MAX_SYMBOLS}")


def _side_bytes(version: int) -> int:
    """Bytes of side information per window: peak gain, and (version 2) loudness correction."""
    return 1 if version == 1 else 2


def pack(header: VQZHeader, gains: np.ndarray, payload: bytes,
         loudness: np.ndarray | None = None) -> bytes:
    """Serialise a .vqz file (format `VERSION`).

    Parameters
    ----------
    header : VQZHeader
        Header fields; validated against the same bounds `unpack` enforces.
    gains : np.ndarray [shape=(num_windows,), dtype=uint8]
        Quantised peak gain code per window (`GAIN_SILENT` for silence).
    payload : bytes
        Entropy-coded indices (a whole number of 32-bit words).
    loudness : np.ndarray [shape=(num_windows,), dtype=int8], optional
        Loudness correction per window in `LOUDNESS_STEP_DB` steps (default 0).

    Returns
    -------
    bytes
        The complete file.
    """
    if header.version != VERSION:
        raise ValueError(f"this vqkeras writes .vqz version {VERSION} only")
    validate_header(header)
    gains = np.asarray(gains)
    if gains.shape != (header.num_windows,):
        raise ValueError(f"need one gain per window ({header.num_windows}); "
                         f"received shape {gains.shape}")
    if len(payload) % 4 or len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload must be whole 32-bit words and <= {MAX_PAYLOAD_BYTES} "
                         f"bytes; received {len(payload)} bytes")
    loudness = (np.zeros(header.num_windows, np.int8) if loudness is None
                else np.asarray(loudness))
    if loudness.shape != (header.num_windows,) or (
            loudness.size and (loudness.min() < -128 or loudness.max() > 127)):
        raise ValueError(f"need one loudness code in -128..127 per window "
                         f"({header.num_windows}); received shape {loudness.shape}")
    head = _HEADER.pack(MAGIC, VERSION, 0, header.model_id, header.sample_rate,
                        header.channels, header.num_stages, 0, header.num_samples,
                        header.num_windows, header.grid[0], header.grid[1], len(payload))
    body = (head + gains.astype("<u1").tobytes() + loudness.astype("<i1").tobytes()
            + bytes(payload))
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(data: bytes) -> tuple[VQZHeader, np.ndarray, np.ndarray, bytes]:
    """Parse and verify a .vqz file (version 1 or 2).

    Parameters
    ----------
    data : bytes
        The whole file.

    Returns
    -------
    header : VQZHeader
    gains : np.ndarray [shape=(num_windows,), dtype=uint8]
    loudness : np.ndarray [shape=(num_windows,), dtype=int8]
        Loudness corrections (all zero in a version 1 file).
    payload : bytes

    Raises
    ------
    CodecFormatError
        If the file is truncated, has trailing bytes, a wrong magic or
        version, a header value out of bounds, or a bad checksum.
    """
    data = bytes(data)
    header, payload_len = read_header(data)
    side = _side_bytes(header.version)
    n = header.num_windows
    expected = HEADER_SIZE + side * n + payload_len + CRC_SIZE
    if len(data) < expected:
        raise CodecFormatError(f"truncated .vqz file: {len(data)} bytes, the header "
                               f"announces {expected}")
    if len(data) > expected:
        raise CodecFormatError(f"corrupt .vqz file: {len(data) - expected} unexpected bytes "
                               f"after the checksum")
    (crc,) = struct.unpack_from("<I", data, expected - CRC_SIZE)
    if crc != zlib.crc32(data[:expected - CRC_SIZE]):
        raise CodecFormatError("corrupt .vqz file: CRC32 checksum mismatch")
    gains = np.frombuffer(data, dtype=np.uint8, count=n, offset=HEADER_SIZE).copy()
    if side == 2:
        loudness = np.frombuffer(data, dtype=np.int8, count=n, offset=HEADER_SIZE + n).copy()
    else:
        loudness = np.zeros(n, np.int8)
    start = HEADER_SIZE + side * n
    return header, gains, loudness, data[start:start + payload_len]


def read_header(data: bytes) -> tuple[VQZHeader, int]:
    """Parse and bound the fixed header (the first `HEADER_SIZE` bytes are enough).

    Lets a reader check what a file announces (its decoded size) before it
    reads the rest. No checksum is verified here: `unpack` does that.

    Returns
    -------
    header : VQZHeader
    payload_length : int

    Raises
    ------
    CodecFormatError
        For a wrong magic, a short header, an unknown version, set reserved
        bits or a value out of bounds.
    """
    data = bytes(data[:HEADER_SIZE])
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise CodecFormatError("not a .vqz file (wrong magic bytes)")
    if len(data) < HEADER_SIZE:
        raise CodecFormatError(f"truncated .vqz file: {len(data)} bytes, the header alone "
                               f"needs {HEADER_SIZE + CRC_SIZE}")
    (_, version, flags, model_id, sample_rate, channels, num_stages, reserved, num_samples,
     num_windows, grid_h, grid_w, payload_len) = _HEADER.unpack_from(data)
    if version not in READ_VERSIONS:
        raise CodecFormatError(f"unsupported .vqz format version {version} (this vqkeras "
                               f"reads versions {', '.join(map(str, READ_VERSIONS))})")
    if flags != 0 or reserved != 0:
        raise CodecFormatError(f"corrupt .vqz header: reserved bits set "
                               f"(flags={flags}, reserved={reserved})")
    header = VQZHeader(model_id=model_id, sample_rate=sample_rate, channels=channels,
                       num_samples=num_samples, num_windows=num_windows,
                       grid=(grid_h, grid_w), num_stages=num_stages, version=version)
    validate_header(header)
    if payload_len % 4 or payload_len > MAX_PAYLOAD_BYTES:
        raise CodecFormatError(f"corrupt .vqz header: payload length {payload_len} is not "
                               f"a whole number of 32-bit words <= {MAX_PAYLOAD_BYTES}")
    return header, payload_len


def file_size(num_windows: int, payload_bytes: int, version: int = VERSION) -> int:
    """Bytes of a .vqz file with this many windows and payload bytes."""
    return HEADER_SIZE + _side_bytes(version) * num_windows + payload_bytes + CRC_SIZE


def quantize_gain(peak: float) -> int:
    """Gain code of a window peak: the smallest 0.5-dB step at or above it.

    Rounding up keeps the normalised window within [-1, 1]. Peaks below
    -127 dBFS (and exact silence) get `GAIN_SILENT`.
    """
    if not np.isfinite(peak) or peak <= 0:
        return GAIN_SILENT
    code = int(np.floor(-20.0 * np.log10(min(peak, 1.0)) / GAIN_STEP_DB + 1e-9))
    return GAIN_SILENT if code >= GAIN_SILENT else max(code, 0)


def dequantize_gain(code: int) -> float:
    """Linear peak gain of a gain code (0.0 for `GAIN_SILENT`)."""
    if code >= GAIN_SILENT:
        return 0.0
    return float(10.0 ** (-int(code) * GAIN_STEP_DB / 20.0))


def quantize_loudness(correction_db: float) -> int:
    """Loudness code (signed byte) nearest to a correction in dB, saturated to -128..127."""
    if not np.isfinite(correction_db):
        return 0
    return int(np.clip(np.round(correction_db / LOUDNESS_STEP_DB), -128, 127))


def dequantize_loudness(code: int) -> float:
    """Linear gain of a loudness code."""
    return float(10.0 ** (int(code) * LOUDNESS_STEP_DB / 20.0))
