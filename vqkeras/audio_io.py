"""Reading and writing WAV files robustly.

`read_wav` always returns what the models expect: mono float32 in [-1, 1] at
the requested sample rate, optionally padded or trimmed to a fixed length. It
turns every way a file can be unusable (missing, empty, truncated, not audio,
NaN/inf samples) into an `AudioFileError` naming the path and the cause.
`write_wav` writes 16-bit PCM atomically, so a crash never leaves half a file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np

from vqkeras.errors import AudioFileError
from vqkeras.files import atomic_path

log = logging.getLogger(__name__)

_PAD_MODES = ("constant", "reflect", "wrap", "edge")
_LENGTH_POLICIES = ("pad_or_trim", "strict")


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

    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: file not found")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path}: file is empty (0 bytes)")
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


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    """Write float audio as a 16-bit PCM WAV, atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination; its folder is created if needed.
    audio : np.ndarray [shape=(samples,) or (samples, channels)]
        Float samples; values outside [-1, 1] are clipped.
    sample_rate : int
        Sample rate in Hz.

    Raises
    ------
    ValueError
        If ``audio`` is empty, has more than 2 dimensions, or holds NaN/inf.

    Notes
    -----
    The data goes to a temporary file in the same folder, which then replaces
    ``path`` with ``os.replace``: readers see the old file or the new one, never
    a partial one.
    """
    import soundfile as sf

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2) or audio.size == 0:
        raise ValueError(f"audio must be a non-empty (samples,) or (samples, channels) array. "
                         f"Received: shape={audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise ValueError(f"audio for {path} contains NaN or infinite samples")
    if int(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be positive. Received: sample_rate={sample_rate}")
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), int(sample_rate), subtype="PCM_16", format="WAV")
