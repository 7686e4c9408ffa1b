"""Continuous framing: one code sequence per signal, computed and decoded chunk by chunk.

The VQ-VAE is convolutional along time, so it does not need fixed windows: a
signal of any length becomes one sequence of code *cells* (a cell is
``time_multiple`` STFT frames, 2048 samples with the default model), and the
decoder turns any run of cells back into frames. To bound memory the codec
runs the networks on *chunks* of `CHUNK_CELLS` cells plus `CONTEXT_CELLS`
cells of context on each side (the networks' receptive field), and keeps
only each chunk's centre. Nothing marks where one chunk ends: the spectrogram
is continuous, and `vqkeras.phase.StreamingInversion` turns it into a waveform
with continuous phase.

Levels: the model expects peak-normalised input. Each *segment* of
``duration`` seconds (4 s) has a peak gain, measured over the segment and
half a segment on either side; the signal is divided by the piecewise-linear
interpolation of those gains between segment centres (an envelope that never
falls below the signal's magnitude), and the decoder multiplies it back,
each segment's gain times its loudness correction.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vqkeras.codec import container

if TYPE_CHECKING:
    from vqkeras.codec.codec_model import CodecInfo

CHUNK_CELLS = 32
"""Cells whose codes (or frames) one network call keeps."""
CONTEXT_CELLS = 4
"""Cells of context on each side of a chunk (the networks' receptive field
is about 3 cells each side; the outputs for these cells are dropped)."""
MARGIN_FRAMES = 32
"""Frames of context on each side of a phase reconstruction region (at most;
`Geometry.margin_frames` keeps it inside a chunk's context)."""
CROSSFADE = 2048
"""Samples over which consecutive phase reconstruction regions are cross-faded
(at most; `Geometry.crossfade`)."""


def min_cell_frames(frame_length: int, frame_step: int) -> int:
    """Smallest time stride the codec can frame: the phase margin inside a chunk's
    context (``CONTEXT_CELLS * cell_frames - 1`` frames) must span one STFT frame."""
    return math.ceil((frame_length / frame_step + 1) / CONTEXT_CELLS)


@dataclass(frozen=True)
class Geometry:
    """Sizes of the continuous framing for one model.

    Attributes
    ----------
    frame_length, frame_step : int
        STFT window and hop.
    cell_frames : int
        Frames per code cell along time (the encoder's time stride).
    segment : int
        Samples per gain/loudness segment.
    sample_rate : int
        The model's rate.
    """

    frame_length: int
    frame_step: int
    cell_frames: int
    segment: int
    sample_rate: int

    @classmethod
    def of(cls, info) -> Geometry:
        spec = info.spectrogram
        if spec.get("scaling", "fixed") != "fixed":
            raise ValueError("the codec needs a model with fixed spectrogram scaling")
        g = cls(int(spec["frame_length"]), int(spec["frame_step"]), int(info.time_multiple),
                int(info.window_samples), int(info.sample_rate))
        least = min_cell_frames(g.frame_length, g.frame_step)
        if g.cell_frames < least:
            raise ValueError(f"the codec needs code cells of at least {least} frames (a time "
                             f"stride of {least} or more); this model's cells have "
                             f"{g.cell_frames}")
        return g

    @property
    def margin_frames(self) -> int:
        """Phase-region margin: `MARGIN_FRAMES`, or less when a chunk's context is shorter
        (a model with a finer time stride has fewer context frames)."""
        return min(MARGIN_FRAMES, CONTEXT_CELLS * self.cell_frames - 1)

    @property
    def crossfade(self) -> int:
        """Cross-fade between phase regions: `CROSSFADE`, or half the margin if shorter."""
        return min(CROSSFADE, self.margin_frames * self.frame_step // 4 * 2)

    @property
    def cell_samples(self) -> int:
        return self.cell_frames * self.frame_step

    @property
    def chunk_frames(self) -> int:
        """Frames of one network call: chunk plus context."""
        return (CHUNK_CELLS + 2 * CONTEXT_CELLS) * self.cell_frames

    @property
    def chunk_samples(self) -> int:
        return CHUNK_CELLS * self.cell_samples

    def num_cells(self, length: int) -> int:
        """Cells that cover every centred frame touching samples ``[0, length)``."""
        frames = (max(1, length) - 1 + self.frame_length // 2) // self.frame_step + 1
        return max(1, math.ceil(frames / self.cell_frames))

    def num_chunks(self, cells: int) -> int:
        return max(1, math.ceil(cells / CHUNK_CELLS))

    def num_segments(self, length: int) -> int:
        return max(1, math.ceil(length / self.segment))

    def segment_centres(self, segments: int) -> np.ndarray:
        return (np.arange(segments) + 0.5) * self.segment


def model_length(info: CodecInfo, sample_rate: int, num_samples: int) -> int:
    """Samples at the model rate of an input of ``num_samples`` at ``sample_rate``."""
    return max(1, math.ceil(num_samples * info.sample_rate / sample_rate))


def expected_layout(info: CodecInfo, sample_rate: int, num_samples: int) -> tuple[int, int]:
    """Code cells and gain segments a file of this length has."""
    geometry = Geometry.of(info)
    length = model_length(info, sample_rate, num_samples)
    return geometry.num_cells(length), geometry.num_segments(length)


def half_segment_peaks(block: np.ndarray, start: int, half: int, peaks: np.ndarray) -> None:
    """Fold a block ``(signals, n)`` starting at sample ``start`` into per-half-segment peaks."""
    n = block.shape[1]
    first, last = start // half, (start + n - 1) // half
    for j in range(first, last + 1):
        a, b = max(j * half, start) - start, min((j + 1) * half, start + n) - start
        if b > a:
            peaks[:, j] = np.maximum(peaks[:, j], np.max(np.abs(block[:, a:b]), axis=1))


def segment_gain_codes(half_peaks: np.ndarray, segments: int) -> np.ndarray:
    """Gain code per segment: the peak over the segment and half a segment either side.

    With these gains interpolated linearly between segment centres, the
    envelope at any sample is at least the peak of a range holding that
    sample, so the normalised signal stays within [-1, 1].
    """
    codes = np.zeros((half_peaks.shape[0], segments), np.uint8)
    for k in range(segments):
        lo, hi = max(0, 2 * k - 1), min(half_peaks.shape[1], 2 * k + 3)
        for c in range(half_peaks.shape[0]):
            codes[c, k] = container.quantize_gain(float(np.max(half_peaks[c, lo:hi])))
    return codes


def envelope(values: np.ndarray, geometry: Geometry, start: int, stop: int) -> np.ndarray:
    """Per-segment values ``(signals, segments)`` interpolated to samples ``[start, stop)``."""
    centres = geometry.segment_centres(values.shape[1])
    t = np.arange(start, stop, dtype=np.float64)
    return np.stack([np.interp(t, centres, v) for v in values]).astype(np.float32)


def gain_values(codes: np.ndarray) -> np.ndarray:
    return np.vectorize(container.dequantize_gain, otypes=[np.float64])(codes)


def loudness_db(codes: np.ndarray) -> np.ndarray:
    return codes.astype(np.float64) * container.LOUDNESS_STEP_DB


class SampleWindow:
    """Random access, moving forwards, to a stream of ``(signals, n)`` blocks.

    `get(a, b)` returns samples ``[a, b)`` (zeros outside ``[0, length)``);
    samples before ``a`` are forgotten, so memory stays bounded when the
    requests move forwards.
    """

    def __init__(self, blocks: Iterator[np.ndarray], signals: int, length: int):
        self._blocks, self._length = blocks, int(length)
        self._buf = np.zeros((signals, 0), np.float32)
        self._start = 0  # sample index of self._buf[:, 0]
        self._done = False

    def get(self, a: int, b: int) -> np.ndarray:
        want = min(b, self._length)
        while not self._done and self._start + self._buf.shape[1] < want:
            block = next(self._blocks, None)
            if block is None:
                self._done = True
            else:
                self._buf = np.concatenate([self._buf, block], axis=1)
        keep = max(0, min(a, self._start + self._buf.shape[1]) - self._start)
        if keep:
            self._buf, self._start = self._buf[:, keep:], self._start + keep
        out = np.zeros((self._buf.shape[0], b - a), np.float32)
        lo, hi = max(a, self._start), min(b, self._start + self._buf.shape[1], self._length)
        if hi > lo:
            out[:, lo - a:hi - a] = self._buf[:, lo - self._start:hi - self._start]
        return out


def hann(frame_length: int) -> np.ndarray:
    """Periodic Hann window (as `scipy.signal.get_window("hann", n)`)."""
    n = np.arange(frame_length)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / frame_length)).astype(np.float32)


def chunk_magnitudes(signal: np.ndarray, geometry: Geometry, chunks: int) -> np.ndarray:
    """Centred-frame STFT magnitudes of consecutive chunks with context.

    Parameters
    ----------
    signal : np.ndarray [shape=(samples,)]
        Samples from ``first_frame * hop - frame_length // 2`` on, where
        ``first_frame`` is the first chunk's first frame (context included).
    chunks : int
        Number of chunks; chunk ``i`` starts ``i * CHUNK_CELLS`` cells later.

    Returns
    -------
    np.ndarray [shape=(chunks, chunk_frames, frame_length // 2 + 1)]
    """
    g = geometry
    step, n = g.frame_step, g.frame_length
    total = (chunks - 1) * CHUNK_CELLS * g.cell_frames + g.chunk_frames
    frames = np.lib.stride_tricks.sliding_window_view(signal, n)[::step][:total]
    spectrum = np.abs(np.fft.rfft(frames * hann(n), axis=-1)).astype(np.float32)
    stride = CHUNK_CELLS * g.cell_frames
    return np.stack([spectrum[i * stride:i * stride + g.chunk_frames] for i in range(chunks)])
