"""Decompression, first step: a ``.vqz`` file -> checked code indices and levels.

Header checks and the decoded-size limit come before the rest of the file is
read; then the container's checks (CRC, model identity, cell and segment
counts, stages, `vqkeras.codec.container`) and entropy decoding
(`vqkeras.codec.entropy`: the payload must be exactly the coding of what it
decodes to). No neural network runs here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vqkeras.codec import container, entropy, framing
from vqkeras.codec.codec_model import CodecInfo
from vqkeras.errors import CodecFormatError, CodecLimitError

MAX_FILE_BYTES = container.file_size(2, container.MAX_SEGMENTS, 2 * container.MAX_PAYLOAD_BYTES)
DEFAULT_MAX_SAMPLES = 2 * 48_000 * 3600
"""Default cap on decoded samples (all channels, at the original rate): one hour
of 48-kHz stereo. A file announcing more is refused before anything is decoded
(``decompress(max_samples=...)``, ``vqkeras decompress --max-samples N``)."""


def read_vqz(data: bytes, info: CodecInfo
             ) -> tuple[container.VQZHeader, np.ndarray, np.ndarray, list[np.ndarray | None]]:
    """Parse a .vqz file for a model up to decoded code indices (no neural network).

    Returns
    -------
    header : VQZHeader
    gains : np.ndarray [shape=(signals, segments), float64]
        Linear peak gain per segment (0 for silence).
    loudness : np.ndarray [shape=(signals, segments), float64]
        Loudness correction per segment in dB.
    indices : list of (np.ndarray [shape=(cells, width, stages), int32] or None)
        Codes of each coded signal; None for a signal coded with 0 stages.

    Raises
    ------
    CodecFormatError
        For a damaged file, another format version, or another model.
    """
    header, gain_codes, loudness_codes, payloads = container.unpack(data)
    if header.model_id != info.model_id:
        raise CodecFormatError(f"file was made with model {header.model_id.hex()}, "
                               f"this model is {info.model_id.hex()}")
    if header.grid_width != info.grid[1]:
        raise CodecFormatError(f"corrupt .vqz file: code grid width {header.grid_width} does "
                               f"not match the model's {info.grid[1]}")
    if max(header.stages) > info.num_stages:
        raise CodecFormatError(f"corrupt .vqz file: {max(header.stages)} stages, the model "
                               f"has {info.num_stages}")
    cells, segments = framing.expected_layout(info, header.sample_rate, header.num_samples)
    if (header.num_cells, header.num_segments) != (cells, segments):
        raise CodecFormatError(f"corrupt .vqz file: {header.num_cells} cells and "
                               f"{header.num_segments} segments for {header.num_samples} "
                               f"samples at {header.sample_rate} Hz (expected {cells} and "
                               f"{segments})")
    indices = [entropy.decode_payload(p, info, (cells, header.grid_width, s), header.version)
               if s else None for p, s in zip(payloads, header.stages)]
    for i, s in enumerate(header.stages):
        if s == 0 and np.any(gain_codes[i] != container.GAIN_SILENT):
            raise CodecFormatError("corrupt .vqz file: a signal with no stages is not silent")
    return (header, framing.gain_values(gain_codes), framing.loudness_db(loudness_codes),
            indices)


def check_vqz_file(input_path: Path, max_samples: int | None) -> container.VQZHeader:
    """The header a file announces, checked by size and announced length before the
    rest is read (`read_vqz_file`; `vqkeras.codec.pipeline.decompress` picks the
    model a file names from it: `vqkeras.codec.codec_model.model_for_file`).

    Raises
    ------
    ValueError
        For a ``max_samples`` that is neither None nor a positive integer.
    CodecFormatError
        For a file larger than any valid one, or a damaged header.
    CodecLimitError
        If it would decode to more than ``max_samples`` samples.
    """
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(
            max_samples, (int, np.integer)) or max_samples < 1):
        raise ValueError(f"max_samples must be a positive integer or None; "
                         f"received max_samples={max_samples!r}")
    size = input_path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CodecFormatError(f"{input_path} is {size} bytes, larger than any valid .vqz file")
    with open(input_path, "rb") as f:
        announced, _ = container.read_header(f.read(container.HEADER_SIZE))
    total = announced.num_samples * announced.channels
    if max_samples is not None and total > max_samples:
        raise CodecLimitError(f"{input_path} would decode to {total} samples "
                              f"({announced.num_samples} x {announced.channels} channels), over "
                              f"the limit of {max_samples} (raise it with --max-samples)")
    return announced


def read_vqz_file(input_path: Path, info: CodecInfo, max_samples: int | None
                  ) -> tuple[container.VQZHeader, np.ndarray, np.ndarray, list[np.ndarray | None]]:
    """`read_vqz` of a file, refused by size and announced length before it is read
    (`check_vqz_file`).

    Raises
    ------
    ValueError
        For a ``max_samples`` that is neither None nor a positive integer.
    CodecFormatError
        For a file larger than any valid one, or damaged (`read_vqz`).
    CodecLimitError
        If it would decode to more than ``max_samples`` samples.
    """
    check_vqz_file(input_path, max_samples)
    return read_vqz(input_path.read_bytes(), info)
