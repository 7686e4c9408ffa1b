"""Compression, pass 1: what to code from an audio file, and at what level.

One read of the file, a block at a time (`vqkeras.codec.stream`), gives the
peaks per half segment and the energies of the candidate signals (the
channels of a mono file, downmixed; for stereo left, right, mid and side).
They choose the channel mode (mono, left/right or mid/side), the phase link
of a stereo pair, and each coded signal's gain per segment
(`vqkeras.codec.framing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vqkeras.codec import container, framing
from vqkeras.codec.codec_model import CodecInfo
from vqkeras.errors import AudioFileError

MID_SIDE_RATIO = 0.1
"""Stereo is coded as mid/side when the weaker of mid and side has at most this
fraction of the stronger's energy (near-mono or anti-phase), else as left/right."""
LINK_CORRELATION = 0.7
"""Two coded signals whose correlation is at least this (in magnitude) share one
phase reconstruction (`vqkeras.phase.StreamingInversion` ``link``): a panned
source stays one coherent source instead of two drifting ones."""

# Channel mixes of a stereo file into candidate signals: L, R, M, S.
_STEREO_CANDIDATES = np.array([[1.0, 0.0, 0.5, 0.5], [0.0, 1.0, 0.5, -0.5]], np.float32)


@dataclass
class Analysis:
    """What pass 1 found in an input file.

    Attributes
    ----------
    sample_rate, channels, frames : int
        The input's rate, channel count and length (samples per channel).
    length : int
        Samples at the model rate.
    segments : int
        Gain and loudness segments.
    mix : np.ndarray [shape=(channels, signals), float32]
        The channel mix of each coded signal.
    mode : int
        `container.MONO`, `LEFT_RIGHT` or `MID_SIDE`.
    link : int
        `container.LINK_*` between the two coded signals.
    gain_codes : np.ndarray [shape=(signals, segments), uint8]
    gains : np.ndarray [shape=(signals, segments), float64]
        Linear gain per segment (0 for silence).
    active : list of bool
        Signals that are not silent (at least one is coded).
    weaker : int
        The signal of less energy (0 for mono).
    """

    sample_rate: int
    channels: int
    frames: int
    length: int
    segments: int
    mix: np.ndarray
    mode: int
    link: int
    gain_codes: np.ndarray
    gains: np.ndarray
    active: list[bool]
    weaker: int

    @property
    def duration(self) -> float:
        """Seconds of the input."""
        return self.frames / self.sample_rate


def _input_info(path: Path) -> tuple[int, int, int]:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises RuntimeError/LibsndfileError
        raise AudioFileError(f"cannot read {path}: {err}") from err
    return int(info.samplerate), int(info.channels), int(info.frames)


def _choose_mode(channels: int, gram: np.ndarray) -> tuple[int, list[int], int]:
    """Channel mode, the candidate signals it codes (indices into L, R, M, S), phase link.

    ``gram`` holds the sums of products of the candidate signals over the file.
    """
    if channels != 2:
        return container.MONO, [0], container.LINK_NONE
    mid, side = gram[2, 2], gram[3, 3]
    picked = [2, 3] if min(mid, side) <= MID_SIDE_RATIO * max(mid, side) else [0, 1]
    a, b = picked
    norm = np.sqrt(gram[a, a] * gram[b, b])
    link = container.LINK_NONE
    if norm > 0 and abs(gram[a, b]) >= LINK_CORRELATION * norm:
        link = container.LINK_SAME if gram[a, b] > 0 else container.LINK_INVERTED
    mode = container.MID_SIDE if picked == [2, 3] else container.LEFT_RIGHT
    return mode, picked, link


def analyse(input_path: Path, info: CodecInfo) -> Analysis:
    """Pass 1 over ``input_path`` for a model.

    Raises
    ------
    AudioFileError
        If the file is unreadable, empty, or too long or wide for the format.
    """
    from vqkeras.codec.stream import read_blocks

    sample_rate, channels, frames = _input_info(input_path)
    if frames == 0:
        raise AudioFileError(f"{input_path}: contains no samples (empty or truncated data chunk)")
    duration = frames / sample_rate
    if duration > container.MAX_DURATION_S or channels > container.MAX_CHANNELS:
        raise AudioFileError(f"{input_path}: {duration:.0f} s, {channels} channels; the .vqz "
                             f"format holds at most {container.MAX_DURATION_S} s and "
                             f"{container.MAX_CHANNELS} channels")
    g = framing.Geometry.of(info)
    length = framing.model_length(info, sample_rate, frames)
    segments = g.num_segments(length)
    half = g.segment // 2
    # Peaks per half segment and energies of every candidate signal.
    mix = (_STEREO_CANDIDATES if channels == 2
           else np.full((channels, 1), 1.0 / channels, np.float32))
    peaks = np.zeros((mix.shape[1], 2 * segments + 2), np.float32)
    gram = np.zeros((mix.shape[1], mix.shape[1]))
    start = 0
    for block in read_blocks(input_path, info.sample_rate, mix):
        block = block[:, :max(0, length - start)]
        if block.shape[1]:
            framing.half_segment_peaks(block, start, half, peaks)
            wide = block.astype(np.float64)
            gram += wide @ wide.T
        start += block.shape[1]
    mode, picked, link = _choose_mode(channels, gram)
    gain_codes = framing.segment_gain_codes(peaks[picked], segments)
    active = [bool(np.any(c != container.GAIN_SILENT)) for c in gain_codes]
    if not any(active):
        active[0] = True  # an all-silent file still codes one signal
    if not all(active):
        link = container.LINK_NONE
    energy = np.diag(gram)[picked]
    weaker = int(np.argmin(energy)) if len(picked) == 2 else 0
    return Analysis(sample_rate=sample_rate, channels=channels, frames=frames, length=length,
                    segments=segments, mix=mix[:, picked], mode=mode, link=link,
                    gain_codes=gain_codes, gains=framing.gain_values(gain_codes),
                    active=active, weaker=weaker)
