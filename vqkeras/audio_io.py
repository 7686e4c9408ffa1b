"""Reading and writing WAV files robustly.

`read_wav` always returns what the models expect: mono float32 in [-1, 1] at
the requested sample rate, optionally padded or trimmed to a fixed length. It
turns every way a file can be unusable (missing, empty, truncated, not audio,
NaN/inf samples) into an `AudioFileError` naming the path and the cause.
`write_wav` writes the format the file name asks for (WAV, FLAC, Ogg Vorbis or
MP3) atomically, so a crash never leaves half a file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np

from vqkeras.errors import AudioFileError, OutputPathError
from vqkeras.files import atomic_write_bytes

log = logging.getLogger(__name__)

_PAD_MODES = ("constant", "reflect", "wrap", "edge")
_LENGTH_POLICIES = ("pad_or_trim", "strict")
#: Output formats by file suffix: (libsndfile format, subtype). No suffix writes WAV.
OUTPUT_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".oga": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
    "": ("WAV", "PCM_16"),
}


def output_format(path: str | os.PathLike) -> tuple[str, str]:
    """The (format, subtype) that `write_wav` uses for ``path``, from its suffix.

    Raises
    ------
    OutputPathError
        For a suffix that names a format vqkeras does not write.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        known = [s for s in OUTPUT_FORMATS if s]
        raise OutputPathError(f"output {path}: cannot write '{suffix}' files; name it "
                              f"{', '.join(known[:-1])} or {known[-1]}")
    return OUTPUT_FORMATS[suffix]


def check_input_file(path: str | os.PathLike) -> Path:
    """Raise `AudioFileError` if ``path`` is missing, a folder or empty; return it as a Path."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: file not found")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path}: file is empty (0 bytes)")
    return path


def read_wav(
    path: str | os.PathLike,
    *,
    sample_rate: int | None = 16000,
    num_samples: int | None = None,
    pad_mode: str = "constant",
    mono: bool = True,
    length_policy: Literal["pad_or_trim", "strict"] = "pad_or_trim",
) -> np.ndarray:
    """Read an audio file as float32, resampled, downmixed and sized as asked.

    Parameters
    ----------
    path : str or PathLike
        WAV (or any format libsndfile reads: FLAC, OGG, AIFF...).
    sample_rate : int or None
        Wanted sample rate. A file at another rate is resampled with soxr
        (high quality) and an INFO line is logged. ``None`` keeps the file's rate.
    num_samples : int or None
        Wanted length. ``None`` keeps the file's length.
    pad_mode : {"constant", "reflect", "wrap", "edge"}
        How a short clip is padded (``numpy.pad`` mode; "constant" pads zeros).
    mono : bool
        Average the channels of a multichannel file into one (logged at INFO).
        If False, a multichannel file gives shape ``(samples, channels)``.
    length_policy : {"pad_or_trim", "strict"}
        With ``num_samples``: pad a short clip / trim a long one, or raise
        `AudioFileError` when the length differs.

    Returns
    -------
    np.ndarray [shape=(samples,) or (samples, channels), dtype=float32]

    Raises
    ------
    AudioFileError
        If the file is missing, empty, unreadable (corrupt, truncated header,
        not audio), contains NaN/inf, or has the wrong length under "strict".
    ValueError
        For a bad argument (the received value is named).
    """
    import soundfile as sf

    if pad_mode not in _PAD_MODES:
        raise ValueError(f"pad_mode must be one of {_PAD_MODES}. Received: pad_mode={pad_mode!r}")
    if length_policy not in _LENGTH_POLICIES:
        raise ValueError(
            f"length_policy must be one of {_LENGTH_POLICIES}. Received: length_policy={length_policy!r}")
    if sample_rate is not None and sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive. Received: sample_rate={sample_rate}")
    if num_samples is not None and num_samples <= 0:
        raise ValueError(f"num_samples must be positive. Received: num_samples={num_samples}")

    path = check_input_file(path)
    try:
        audio, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioFileError(f"{path}: not a readable audio file ({exc})") from exc
    if audio.shape[0] == 0:
        raise AudioFileError(f"{path}: contains no samples (empty or truncated data chunk)")
    if not np.all(np.isfinite(audio)):
        raise AudioFileError(f"{path}: contains NaN or infinite samples")

    if audio.shape[1] > 1 and mono:
        log.info("%s: downmixing %d channels to mono", path, audio.shape[1])
        audio = audio.mean(axis=1, keepdims=True)
    if sample_rate is not None and file_rate != sample_rate:
        import soxr

        log.info("%s: resampling from %d Hz to %d Hz", path, file_rate, sample_rate)
        audio = soxr.resample(audio, file_rate, sample_rate, quality="HQ").astype("float32")
    if mono or audio.shape[1] == 1:
        audio = audio[:, 0] if audio.shape[1] == 1 else audio

    if num_samples is not None and audio.shape[0] != num_samples:
        if length_policy == "strict":
            raise AudioFileError(
                f"{path}: has {audio.shape[0]} samples, expected {num_samples} (length_policy='strict')")
        if audio.shape[0] > num_samples:
            audio = audio[:num_samples]
        else:
            pad = [(0, num_samples - audio.shape[0])] + [(0, 0)] * (audio.ndim - 1)
            audio = np.pad(audio, pad, mode=pad_mode)
    return np.ascontiguousarray(audio, dtype=np.float32)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, *,
              inputs: tuple[str | os.PathLike, ...] = ()) -> None:
    """Write float audio in the format ``path``'s suffix names, atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination; its folder is created if needed. ``.wav`` (or no suffix)
        writes 16-bit PCM WAV, ``.flac`` 16-bit FLAC, ``.ogg``/``.oga`` Ogg
        Vorbis, ``.mp3`` MP3 (see `OUTPUT_FORMATS`).
    audio : np.ndarray [shape=(samples,) or (samples, channels)]
        Float samples; values outside [-1, 1] are clipped.
    sample_rate : int
        Sample rate in Hz.
    inputs : tuple of paths
        The caller's input files: ``path`` may not be one of them.

    Raises
    ------
    ValueError
        If ``audio`` is empty, has more than 2 dimensions, or holds NaN/inf.
    OutputPathError
        For an unknown suffix, or a ``path`` that is an input or a folder.
    AudioFileError
        If the format cannot hold this audio (e.g. MP3 at 96 kHz).

    Notes
    -----
    The file is encoded in memory and then written to a temporary file in the
    same folder, which replaces ``path`` with ``os.replace``: readers see the
    old file or the new one, never a partial one, and a full or read-only disk
    raises a plain `OSError` naming the cause.
    """
    import io

    import soundfile as sf

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2) or audio.size == 0:
        raise ValueError(f"audio must be a non-empty (samples,) or (samples, channels) array. "
                         f"Received: shape={audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"audio for {path} contains NaN or infinite samples")
    if int(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be positive. Received: sample_rate={sample_rate}")
    fmt, subtype = output_format(path)
    buffer = io.BytesIO()
    try:
        sf.write(buffer, np.clip(audio, -1.0, 1.0), int(sample_rate), subtype=subtype, format=fmt)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        channels = 1 if audio.ndim == 1 else audio.shape[1]
        raise AudioFileError(f"{path}: {fmt} cannot hold {channels}-channel audio at "
                             f"{int(sample_rate)} Hz ({exc}); use .wav or .flac") from exc
    atomic_write_bytes(path, buffer.getvalue(), inputs=inputs)
