"""Block-by-block audio for the codec: memory bounded whatever the length or channel count.

`read_windows` reads a sound file a block at a time (at most `BLOCK_VALUES`
samples over all channels), downmixes and resamples each block with a
streaming soxr resampler, and yields the model's fixed-length windows.
`StreamWriter` takes the decoded mono signal at the model's rate in pieces,
resamples it back, repeats it into every channel and writes it with
soundfile in write mode, again at most `BLOCK_VALUES` samples at a time.
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


def read_mono_blocks(path: str | Path, sample_rate: int, *,
                     block_values: int | None = None) -> Iterator[np.ndarray]:
    """The file's mono downmix at ``sample_rate``, as float32 blocks.

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
        frames = _block_frames(handle.channels, block_values)
        resampler = (soxr.ResampleStream(handle.samplerate, sample_rate, 1, dtype="float32",
                                         quality="HQ")
                     if handle.samplerate != sample_rate else None)
        while True:
            try:
                block = handle.read(frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioFileError(f"{path}: read error ({exc})") from exc
            last = len(block) < frames
            if not np.all(np.isfinite(block)):
                raise AudioFileError(f"{path}: contains NaN or infinite samples")
            mono = block.mean(axis=1, dtype=np.float32)
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=last)
            if len(mono):
                yield np.asarray(mono, np.float32)
            if last:
                return


def read_windows(path: str | Path, sample_rate: int, window: int, length: int,
                 num_windows: int, *, block_values: int | None = None) -> Iterator[np.ndarray]:
    """Exactly ``num_windows`` windows of ``window`` samples of the file's mono signal.

    The signal is cut (or zero-padded) to ``length`` samples at ``sample_rate``
    and then zero-padded to whole windows, as the codec codes it.
    """
    buffer = np.zeros(window, np.float32)
    filled, taken, emitted = 0, 0, 0
    for block in read_mono_blocks(path, sample_rate, block_values=block_values):
        block = block[:max(0, length - taken)]
        taken += len(block)
        while len(block):
            n = min(window - filled, len(block))
            buffer[filled:filled + n] = block[:n]
            filled, block = filled + n, block[n:]
            if filled == window and emitted < num_windows:
                yield buffer.copy()
                emitted, filled = emitted + 1, 0
        if taken >= length:
            break
    while emitted < num_windows:
        buffer[filled:] = 0.0
        yield buffer.copy()
        emitted, filled = emitted + 1, 0


class StreamWriter:
    """Write a mono model-rate signal to a sound file as it is decoded.

    Parameters
    ----------
    path : Path
        The (temporary) file to write.
    fmt, subtype : str
        soundfile format and subtype (`vqkeras.audio_io.output_format`).
    model_rate, sample_rate : int
        Rate of the pieces given to `write`, and of the file.
    channels : int
        Every channel gets the same signal.
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
        self._resampler = (soxr.ResampleStream(model_rate, sample_rate, 1, dtype="float32",
                                               quality="HQ")
                           if model_rate != sample_rate else None)
        self._channels = int(channels)
        self._frames = _block_frames(channels, block_values)
        self._left_in = int(length)
        self._left_out = int(num_samples)

    def _emit(self, audio: np.ndarray) -> None:
        audio = np.clip(audio[:self._left_out], -1.0, 1.0).astype(np.float32)
        self._left_out -= len(audio)
        for start in range(0, len(audio), self._frames):
            part = audio[start:start + self._frames]
            self._checked(self._file.write, np.repeat(part[:, None], self._channels, axis=1)
                          if self._channels > 1 else part)

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
        """Add decoded samples at the model rate (beyond ``length`` they are dropped)."""
        audio = np.asarray(audio, np.float32)[:self._left_in]
        self._left_in -= len(audio)
        if self._resampler is not None:
            audio = self._resampler.resample_chunk(audio)
        self._emit(audio)

    def abort(self) -> None:
        """Close the file as it is (the caller discards it, so a failing flush is moot)."""
        try:
            self._file.close()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass

    def close(self) -> None:
        """Flush the resampler, pad to the exact length with zeros, close the file."""
        if self._resampler is not None:
            self._emit(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            self._resampler = None
        while self._left_out > 0:
            self._emit(np.zeros(min(self._left_out, self._frames), np.float32))
        self._checked(self._file.close)
