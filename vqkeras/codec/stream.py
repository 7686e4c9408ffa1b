"""Block-by-block audio for the codec: memory bounded whatever the length or channel count.

`read_blocks` reads a sound file a block at a time (at most `BLOCK_VALUES`
samples over all channels), mixes its channels into the signals the codec
codes (mono downmix, left/right or mid/side) and resamples each block with a
streaming soxr resampler. `StreamWriter` takes the decoded signals at the
model's rate in pieces, resamples them back, spreads them over the file's
channels and writes them with soundfile in write mode, again at most
`BLOCK_VALUES` samples at a time.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from vqkeras.errors import AudioFileError

BLOCK_VALUES = 1 << 19
"""Samples (all channels together) read or written per block: 2 MB of float32."""


def _block_frames(channels: int, block_values: int | None) -> int:
    # Looked up at call time, so tests can shrink BLOCK_VALUES.
    values = BLOCK_VALUES if block_values is None else block_values
    return max(1, values // max(1, channels))


def read_blocks(path: str | Path, sample_rate: int, mix: np.ndarray | None = None, *,
                block_values: int | None = None) -> Iterator[np.ndarray]:
    """The file's signals at ``sample_rate``, as float32 blocks ``(signals, n)``.

    Parameters
    ----------
    mix : np.ndarray [shape=(channels, signals)], optional
        Each output signal is the file's channels weighted by a column
        (e.g. the mono downmix, or left/right/mid/side). Default: the
        mono downmix.

    Raises
    ------
    AudioFileError
        If the file cannot be read or holds NaN/inf samples.
    """
    import soundfile as sf
    import soxr

    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioFileError(f"{path}: not a readable audio file ({exc})") from exc
    with handle:
        if mix is None:
            mix = np.full((handle.channels, 1), 1.0 / handle.channels, np.float32)
        mix = np.asarray(mix, np.float32)
        if mix.shape[0] != handle.channels:
            raise ValueError(f"mix for {mix.shape[0]} channels, {path} has {handle.channels}")
        frames = _block_frames(handle.channels, block_values)
        resampler = (soxr.ResampleStream(handle.samplerate, sample_rate, mix.shape[1],
                                         dtype="float32", quality="HQ")
                     if handle.samplerate != sample_rate else None)
        while True:
            try:
                block = handle.read(frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioFileError(f"{path}: read error ({exc})") from exc
            last = len(block) < frames
            if not np.all(np.isfinite(block)):
                raise AudioFileError(f"{path}: contains NaN or infinite samples")
            signals = np.ascontiguousarray(block @ mix)
            if resampler is not None:
                signals = resampler.resample_chunk(signals, last=last)
            if len(signals):
                yield np.ascontiguousarray(np.asarray(signals, np.float32).T)
            if last:
                return


SOFT_CLIP_KNEE = 0.9
"""Level (linear) above which `soft_clip` bends the signal towards full scale."""


def soft_clip(audio: np.ndarray, knee: float = SOFT_CLIP_KNEE) -> np.ndarray:
    """``audio`` unchanged up to ``knee``, then bent smoothly so that it never exceeds 1.

    Phase reconstruction does not keep the input's crest factor: a
    loudness-matched decode of a dense, peak-normalised clip can peak several
    dB over full scale. A hard clip there has a corner at every over; this
    curve, ``knee + (1 - knee) * tanh((|x| - knee) / (1 - knee))``, has the
    same slope as the signal at the knee. Memoryless, so it streams.
    """
    x = np.asarray(audio, np.float32)
    over = np.abs(x) > knee
    if not over.any():
        return x
    span = 1.0 - knee
    bent = np.sign(x) * (knee + span * np.tanh((np.abs(x) - knee) / span))
    return np.where(over, bent, x).astype(np.float32)


class StreamWriter:
    """Write model-rate audio to a sound file as it is decoded.

    Parameters
    ----------
    path : Path
        The (temporary) file to write.
    fmt, subtype : str
        soundfile format and subtype (`vqkeras.audio_io.output_format`).
    model_rate, sample_rate : int
        Rate of the pieces given to `write`, and of the file.
    channels : int
        The file's channels. `write` takes ``(n,)`` or ``(n, 1)`` audio (every
        channel gets it) or ``(n, channels)``.
    length, num_samples : int
        Samples to keep at the model rate, and samples per channel of the file.
    name : str or Path, optional
        The file named in errors (the final output, not the temporary path).
    """

    def __init__(self, path: Path, fmt: str, subtype: str, model_rate: int, sample_rate: int,
                 channels: int, length: int, num_samples: int, *, name: str | Path | None = None,
                 block_values: int | None = None):
        import soundfile as sf
        import soxr

        self._path, self._name = Path(path), str(name if name is not None else path)

        try:
            self._file = sf.SoundFile(str(path), "w", samplerate=int(sample_rate),
                                      channels=int(channels), subtype=subtype, format=fmt)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioFileError(f"{path}: {fmt} cannot hold {channels}-channel audio at "
                                 f"{int(sample_rate)} Hz ({exc}); use .wav or .flac") from exc
        self._model_rate, self._sample_rate = int(model_rate), int(sample_rate)
        self._resampler = None  # made on the first write, for that many signals
        self._signals = 1
        self._channels = int(channels)
        self._frames = _block_frames(channels, block_values)
        self._left_in = int(length)
        self._left_out = int(num_samples)

    def _emit(self, audio: np.ndarray) -> None:
        audio = soft_clip(audio[:self._left_out])
        self._left_out -= len(audio)
        for start in range(0, len(audio), self._frames):
            part = audio[start:start + self._frames]
            if part.shape[1] != self._channels:
                part = np.repeat(part[:, :1], self._channels, axis=1)
            self._checked(self._file.write, part)

    def _checked(self, call, *args) -> None:
        """Run a libsndfile call; its opaque "System error" becomes an `OSError` naming the cause."""
        import soundfile as sf

        try:
            call(*args)
        except (sf.LibsndfileError, RuntimeError) as exc:
            try:
                stat = os.statvfs(self._path.parent)
                full = stat.f_bavail * stat.f_frsize < 4 * max(BLOCK_VALUES, 1 << 16)
            except OSError:
                full = False
            if full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._name) from exc
            raise AudioFileError(f"{self._name}: write error ({exc})") from exc

    def write(self, audio: np.ndarray) -> None:
        """Add decoded samples ``(n,)`` or ``(n, signals)`` at the model rate.

        Samples beyond ``length`` are dropped.
        """
        import soxr

        audio = np.asarray(audio, np.float32)
        audio = audio[:, None] if audio.ndim == 1 else audio
        audio = audio[:self._left_in]
        self._left_in -= len(audio)
        self._signals = audio.shape[1]
        if self._model_rate != self._sample_rate:
            if self._resampler is None:
                self._resampler = soxr.ResampleStream(self._model_rate, self._sample_rate,
                                                      audio.shape[1], dtype="float32",
                                                      quality="HQ")
            audio = self._resampler.resample_chunk(np.ascontiguousarray(audio))
            audio = audio[:, None] if audio.ndim == 1 else audio
        self._emit(audio)

    def abort(self) -> None:
        """Close the file as it is (the caller discards it, so a failing flush is moot)."""
        try:
            self._file.close()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass

    def close(self) -> None:
        """Flush the resampler, pad to the exact length with zeros, close the file."""
        signals = self._signals
        if self._resampler is not None:
            rest = self._resampler.resample_chunk(np.zeros((0, signals), np.float32), last=True)
            self._emit(rest[:, None] if rest.ndim == 1 else rest)
            self._resampler = None
        while self._left_out > 0:
            self._emit(np.zeros((min(self._left_out, self._frames), signals), np.float32))
        self._checked(self._file.close)
