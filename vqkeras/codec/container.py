"""The ``.vqz`` byte format: pack and unpack, with every field bounded.

The layout is documented byte by byte in ``docs/format.md``. All integers are
little-endian. Unpacking checks, in this order: length of the fixed header,
magic, version, flags, each header value against its bound (before anything
is allocated from it), the exact file length those values imply, and the
CRC32 of everything before the checksum. Only then are the gains, loudness
corrections and payloads sliced out. Any failure raises
`vqkeras.errors.CodecFormatError` naming what is wrong; no other exception
escapes `unpack`.

Version 3 codes one continuous sequence of code cells per coded signal (no
windows, hence no seams), up to two signals (left/right or mid/side), with a
peak gain and a loudness correction per segment and signal. Version 4 has the
same layout; only its payloads differ: they are context coded
(`vqkeras.codec.entropy.encode_context`) instead of one static table per
stage. Both are read; a model writes the version its tables code
(`CodecInfo.format_version`).

Matching the header against a model (identity, grid, cell and segment counts,
stages) is the job of `vqkeras.codec.unpack`, which knows the model.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from vqkeras.errors import CodecFormatError

MAGIC = b"\x89VQZ"
"""First four bytes of every .vqz file (a high-bit byte, like PNG, catches 7-bit mangling)."""

VERSION = 4
"""Newest format version (context-coded payloads); `pack` writes ``header.version``."""
WRITE_VERSIONS = (3, 4)
"""Versions `pack` writes (3: a model without context tables)."""
READ_VERSIONS = (3, 4)
"""Versions this code reads. Versions 1 and 2 coded independent 4-s windows with
another model; they are refused with a message saying so."""

MODEL_ID_BYTES = 16

MONO, LEFT_RIGHT, MID_SIDE = 0, 1, 2
"""Channel modes: one coded signal (the mono downmix), or two: left and right,
or mid ``(L + R) / 2`` and side ``(L - R) / 2``."""
MODE_NAMES = {MONO: "mono", LEFT_RIGHT: "left/right", MID_SIDE: "mid/side"}

LINK_NONE, LINK_SAME, LINK_INVERTED = 0, 1, 3
"""Phase link of the second coded signal (header flags): reconstructed on its own,
or from the first signal's phase (the two are coherent, e.g. a panned source),
or from the first signal's phase turned by 180 degrees (coherent, opposite sign)."""

# Fixed header: magic, version u16, flags u16, model id (16 bytes),
# sample rate u32, channels u16, mode u8, coded channels u8, samples u64,
# cells u32, segments u32, grid width u16, stages u8 x 2, payload lengths u32 x 2.
_HEADER = struct.Struct("<4sHH16sIHBBQIIHBBII")
HEADER_SIZE = _HEADER.size  # 60 bytes
CRC_SIZE = 4

# Bounds, checked before anything is allocated from a header value.
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64
MAX_DURATION_S = 4 * 3600  # four hours
MAX_SEGMENTS = 16_384  # four hours of 1-s segments
MAX_CELLS = 1 << 20  # four hours at 16 kHz is ~28k cells of 2048 samples
MAX_GRID_SIDE = 1024
MAX_STAGES = 32
MAX_SYMBOLS = 1 << 26  # cells * width * stages per channel: at most 256 MB of int32 codes
MAX_PAYLOAD_BYTES = 1 << 28

GAIN_SILENT = 255
"""Gain code of an all-zero segment."""
GAIN_STEP_DB = 0.5
"""Peak gains are stored as ``code = ceil(-20 log10(peak) / 0.5)``, 0..254."""
LOUDNESS_STEP_DB = 0.25
"""Loudness corrections are signed bytes in 0.25-dB steps: -32 .. +31.75 dB."""


@dataclass(frozen=True)
class VQZHeader:
    """Decoded header fields of a .vqz file.

    Attributes
    ----------
    model_id : bytes
        16 bytes identifying the model weights and probability tables.
    sample_rate : int
        Sample rate of the original input, restored at decode.
    channels : int
        Channel count of the original input.
    num_samples : int
        Samples per channel of the original input, at ``sample_rate``.
    num_cells : int
        Code cells along time of each coded signal (one continuous sequence).
    num_segments : int
        Segments with their own peak gain and loudness correction.
    grid_width : int
        Code cells along frequency.
    stages : tuple of int
        RVQ stages coded per cell, one per coded signal; 0 for a silent
        signal (nothing is coded for it), but not for all.
    mode : int
        `MONO`, `LEFT_RIGHT` or `MID_SIDE`.
    link : int
        `LINK_NONE`, `LINK_SAME` or `LINK_INVERTED` (two coded signals only).
    version : int
        Format version of the file.
    """

    model_id: bytes
    sample_rate: int
    channels: int
    num_samples: int
    num_cells: int
    num_segments: int
    grid_width: int
    stages: tuple[int, ...]
    mode: int = MONO
    link: int = LINK_NONE
    version: int = VERSION

    @property
    def coded_channels(self) -> int:
        """Signals coded: 1 (mono) or 2."""
        return 1 if self.mode == MONO else 2

    @property
    def num_symbols(self) -> int:
        """Code indices of all coded signals."""
        return self.num_cells * self.grid_width * sum(self.stages)


def validate_header(header: VQZHeader) -> None:
    """Check every header field against its bound.

    Raises
    ------
    CodecFormatError
        Naming the first field out of range.
    """
    def bad(what: str) -> CodecFormatError:
        return CodecFormatError(f"corrupt .vqz header: {what}")

    if header.version not in READ_VERSIONS:
        raise CodecFormatError(_version_message(header.version))
    if not isinstance(header.model_id, bytes) or len(header.model_id) != MODEL_ID_BYTES:
        raise bad(f"model id must be {MODEL_ID_BYTES} bytes")
    if not 1 <= header.sample_rate <= MAX_SAMPLE_RATE:
        raise bad(f"sample rate {header.sample_rate} outside 1..{MAX_SAMPLE_RATE}")
    if not 1 <= header.channels <= MAX_CHANNELS:
        raise bad(f"channel count {header.channels} outside 1..{MAX_CHANNELS}")
    if header.mode not in MODE_NAMES:
        raise bad(f"channel mode {header.mode} is not one of {sorted(MODE_NAMES)}")
    if header.mode != MONO and header.channels != 2:
        raise bad(f"{MODE_NAMES[header.mode]} coding of {header.channels} channels")
    if header.link not in (LINK_NONE, LINK_SAME, LINK_INVERTED) or (
            header.mode == MONO and header.link != LINK_NONE):
        raise bad(f"phase link {header.link} with channel mode {header.mode}")
    max_samples = MAX_DURATION_S * header.sample_rate
    if not 1 <= header.num_samples <= max_samples:
        raise bad(f"sample count {header.num_samples} outside 1..{max_samples} "
                  f"({MAX_DURATION_S} s at {header.sample_rate} Hz)")
    if not 1 <= header.num_cells <= MAX_CELLS:
        raise bad(f"cell count {header.num_cells} outside 1..{MAX_CELLS}")
    if not 1 <= header.num_segments <= MAX_SEGMENTS:
        raise bad(f"segment count {header.num_segments} outside 1..{MAX_SEGMENTS}")
    if not 1 <= header.grid_width <= MAX_GRID_SIDE:
        raise bad(f"grid width {header.grid_width} outside 1..{MAX_GRID_SIDE}")
    stages = tuple(header.stages)
    if len(stages) != header.coded_channels:
        raise bad(f"{len(stages)} stage counts for {header.coded_channels} coded signals")
    if any(not 0 <= s <= MAX_STAGES for s in stages) or max(stages) < 1:
        raise bad(f"stage counts {stages}: each 0..{MAX_STAGES} (0: a silent signal), "
                  f"at least one coded")
    if header.num_symbols > MAX_SYMBOLS:
        raise bad(f"{header.num_symbols} code indices exceed the limit of {MAX_SYMBOLS}")


def _version_message(version: int) -> str:
    if version in (1, 2):
        return (f".vqz format version {version} (independent 4-s windows, written by vqkeras "
                f"before the continuous framing) is not read by this vqkeras, which reads "
                f"versions {', '.join(map(str, READ_VERSIONS))}: decode it with the vqkeras "
                f"that wrote it")
    return (f"unsupported .vqz format version {version} (this vqkeras reads versions "
            f"{', '.join(map(str, READ_VERSIONS))})")


def side_bytes(header: VQZHeader) -> int:
    """Bytes of side information: a peak gain and a loudness correction per segment and signal."""
    return 2 * header.coded_channels * header.num_segments


def pack(header: VQZHeader, gains: np.ndarray, loudness: np.ndarray,
         payloads: list[bytes]) -> bytes:
    """Serialise a .vqz file (format ``header.version``, 3 or 4).

    Parameters
    ----------
    header : VQZHeader
        Header fields; validated against the same bounds `unpack` enforces.
    gains : np.ndarray [shape=(coded_channels, num_segments), dtype=uint8]
        Quantised peak gain code per segment (`GAIN_SILENT` for silence).
    loudness : np.ndarray [shape=(coded_channels, num_segments), dtype=int8]
        Loudness correction per segment in `LOUDNESS_STEP_DB` steps.
    payloads : list of bytes
        Entropy-coded indices of each coded signal (whole 32-bit words;
        empty for a signal with 0 stages).

    Returns
    -------
    bytes
        The complete file.
    """
    if header.version not in WRITE_VERSIONS:
        raise ValueError(f"this vqkeras writes .vqz versions "
                         f"{', '.join(map(str, WRITE_VERSIONS))}; received "
                         f"version={header.version!r}")
    validate_header(header)
    shape = (header.coded_channels, header.num_segments)
    gains, loudness = np.asarray(gains), np.asarray(loudness)
    if gains.shape != shape or loudness.shape != shape:
        raise ValueError(f"need gains and loudness codes of shape {shape}; received "
                         f"{gains.shape} and {loudness.shape}")
    if loudness.size and (loudness.min() < -128 or loudness.max() > 127):
        raise ValueError("loudness codes must be in -128..127")
    if len(payloads) != header.coded_channels:
        raise ValueError(f"need {header.coded_channels} payloads; received {len(payloads)}")
    for p, stages in zip(payloads, header.stages):
        if len(p) % 4 or len(p) > MAX_PAYLOAD_BYTES or (stages == 0) != (len(p) == 0):
            raise ValueError(f"payload of {len(p)} bytes for {stages} stages: must be whole "
                             f"32-bit words, <= {MAX_PAYLOAD_BYTES} bytes, empty iff 0 stages")
    lengths = [len(p) for p in payloads] + [0] * (2 - len(payloads))
    stages = list(header.stages) + [0] * (2 - len(header.stages))
    head = _HEADER.pack(MAGIC, header.version, header.link, header.model_id, header.sample_rate,
                        header.channels, header.mode, header.coded_channels, header.num_samples,
                        header.num_cells, header.num_segments, header.grid_width,
                        stages[0], stages[1], lengths[0], lengths[1])
    body = (head + gains.astype("<u1").tobytes() + loudness.astype("<i1").tobytes()
            + b"".join(bytes(p) for p in payloads))
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(data: bytes) -> tuple[VQZHeader, np.ndarray, np.ndarray, list[bytes]]:
    """Parse and verify a .vqz file.

    Parameters
    ----------
    data : bytes
        The whole file.

    Returns
    -------
    header : VQZHeader
    gains : np.ndarray [shape=(coded_channels, num_segments), dtype=uint8]
    loudness : np.ndarray [shape=(coded_channels, num_segments), dtype=int8]
    payloads : list of bytes
        One per coded signal.

    Raises
    ------
    CodecFormatError
        If the file is truncated, has trailing bytes, a wrong magic or
        version, a header value out of bounds, or a bad checksum.
    """
    data = bytes(data)
    header, lengths = read_header(data)
    side = side_bytes(header)
    expected = HEADER_SIZE + side + sum(lengths) + CRC_SIZE
    if len(data) < expected:
        raise CodecFormatError(f"truncated .vqz file: {len(data)} bytes, the header "
                               f"announces {expected}")
    if len(data) > expected:
        raise CodecFormatError(f"corrupt .vqz file: {len(data) - expected} unexpected bytes "
                               f"after the checksum")
    (crc,) = struct.unpack_from("<I", data, expected - CRC_SIZE)
    if crc != zlib.crc32(data[:expected - CRC_SIZE]):
        raise CodecFormatError("corrupt .vqz file: CRC32 checksum mismatch")
    shape = (header.coded_channels, header.num_segments)
    n = shape[0] * shape[1]
    gains = np.frombuffer(data, np.uint8, count=n, offset=HEADER_SIZE).reshape(shape).copy()
    loudness = np.frombuffer(data, np.int8, count=n, offset=HEADER_SIZE + n).reshape(shape).copy()
    payloads, start = [], HEADER_SIZE + side
    for length in lengths:
        payloads.append(data[start:start + length])
        start += length
    return header, gains, loudness, payloads


def read_header(data: bytes) -> tuple[VQZHeader, list[int]]:
    """Parse and bound the fixed header (the first `HEADER_SIZE` bytes are enough).

    Lets a reader check what a file announces (its decoded size) before it
    reads the rest. No checksum is verified here: `unpack` does that.

    Returns
    -------
    header : VQZHeader
    payload_lengths : list of int
        One per coded signal.

    Raises
    ------
    CodecFormatError
        For a wrong magic, a short header, an unknown version, set reserved
        bits or a value out of bounds.
    """
    data = bytes(data[:HEADER_SIZE])
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise CodecFormatError("not a .vqz file (wrong magic bytes)")
    if len(data) >= len(MAGIC) + 2:
        (version,) = struct.unpack_from("<H", data, len(MAGIC))
        if version not in READ_VERSIONS:
            raise CodecFormatError(_version_message(version))
    if len(data) < HEADER_SIZE:
        raise CodecFormatError(f"truncated .vqz file: {len(data)} bytes, the header alone "
                               f"needs {HEADER_SIZE + CRC_SIZE}")
    (_, version, flags, model_id, sample_rate, channels, mode, coded, num_samples, num_cells,
     num_segments, grid_width, stages0, stages1, length0, length1) = _HEADER.unpack_from(data)
    if flags not in (LINK_NONE, LINK_SAME, LINK_INVERTED):
        raise CodecFormatError(f"corrupt .vqz header: reserved bits set (flags={flags})")
    if mode not in MODE_NAMES or coded != (1 if mode == MONO else 2):
        raise CodecFormatError(f"corrupt .vqz header: channel mode {mode} with {coded} coded "
                               f"signals")
    if coded == 1 and (stages1 or length1):
        raise CodecFormatError("corrupt .vqz header: a second signal in a mono file")
    stages = (stages0,) if coded == 1 else (stages0, stages1)
    header = VQZHeader(model_id=model_id, sample_rate=sample_rate, channels=channels,
                       num_samples=num_samples, num_cells=num_cells, num_segments=num_segments,
                       grid_width=grid_width, stages=stages, mode=mode, link=flags,
                       version=version)
    validate_header(header)
    lengths = [length0, length1][:coded]
    for length, s in zip(lengths, stages):
        if length % 4 or length > MAX_PAYLOAD_BYTES or (s == 0) != (length == 0):
            raise CodecFormatError(f"corrupt .vqz header: payload length {length} for {s} "
                                   f"stages (whole 32-bit words <= {MAX_PAYLOAD_BYTES}, "
                                   f"empty iff 0 stages)")
    return header, lengths


def file_size(coded_channels: int, num_segments: int, payload_bytes: int) -> int:
    """Bytes of a .vqz file: header, side information, payloads and checksum."""
    return HEADER_SIZE + 2 * coded_channels * num_segments + payload_bytes + CRC_SIZE


def quantize_gain(peak: float) -> int:
    """Gain code of a segment peak: the smallest 0.5-dB step at or above it.

    Rounding up keeps the normalised signal within [-1, 1]. Peaks below
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
