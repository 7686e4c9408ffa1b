"""Seamless phase reconstruction of long magnitudes, one segment at a time.

`invert_magnitude` holds the whole signal at once. For a long file that costs
memory in proportion to its length, and inverting fixed windows separately
leaves seams: each window gets its own phase, and where two windows meet the
waveforms do not line up (a click, or an energy dip where they cancel).

`StreamingInversion` inverts overlapping regions in order. Each region starts
from the phase of the audio already produced (PGHI integrates outwards from
it, `pghi_phase(known_phase=...)`), so the new region continues the old one
coherently, and the two are cross-faded over a short stretch where both
exist. Memory is one region, whatever the length.

Layout, with ``h = frame_step``, segment ``k`` covering samples
``[k S, (k + 1) S)`` and a margin ``P`` on each side::

    region k:        [k S - P,                (k + 1) S + P)
    magnitude given: frames k S / h - P / h ... (k + 1) S / h + P / h  (centred frames)
    written:         [k S - X, (k + 1) S - X)    (X: half the cross-fade)

The first segment writes from sample 0; `finish` writes the last region's
remainder.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _window(frame_length: int, window) -> np.ndarray:
    from vqkeras.phase.fast_griffin_lim import _window_array

    return np.asarray(_window_array(window, frame_length, frame_length), np.float64)


class StreamingInversion:
    """Invert an STFT magnitude segment by segment, with continuous phase.

    Parameters
    ----------
    frame_length, frame_step : int
        STFT window and hop (``fft_length = frame_length``, centred frames).
    segment_frames : int
        Hops per segment: each `push` writes ``segment_frames * frame_step``
        samples (after the first, which writes ``crossfade // 2`` fewer).
    margin_frames : int
        Context frames on each side of a segment. At least
        ``frame_length / frame_step`` and more than half the cross-fade.
    crossfade : int
        Samples over which consecutive regions are cross-faded (even).
    n_iter : int
        Iterations per region.
    method : {"adam", "griffin_lim"}
        `invert_magnitude` (Adam on the waveform) or fast `griffin_lim`
        (momentum 0.99), both started from PGHI.
    batch : int
        Signals inverted side by side (e.g. the channels of a file).
    window : str, tuple or array
        The analysis window.
    seed : int
        Seed of PGHI's random phase for quiet coefficients.
    link : {0, 1, -1}
        With ``batch=2``: 0 inverts both signals on their own; 1 gives the
        second the first's reconstructed phase, -1 that phase turned by 180
        degrees (no iterations of its own: any would let it drift). For
        coherent signals (a panned source; its mid and side) this keeps them
        coherent: inverted on their own, the two drift apart and the stereo
        image smears (correlation 0.86 instead of 0.998 on a panned note).
    keep_energy : bool or np.ndarray
        Scale each region's audio so that its STFT energy over the segment
        equals the target magnitude's (at most +-6 dB); an array of
        ``frame_length // 2 + 1`` bin weights measures a weighted energy
        instead (e.g. a loudness weighting). A magnitude no signal has
        exactly (a decoder network's) loses 0.5-1.5 dB of energy in
        reconstruction, unevenly across frequency, and a codec that set its
        level from the magnitude would come out that much too quiet.
    peak_projection : callable, optional
        ``f(wave, start, refitting) -> projected or None`` for a region's
        audio ``(batch, n)`` starting at sample ``start`` (negative in the
        first region's margin): None when the region is within the output's
        range, else the nearest audio that is (e.g. the written channels
        clipped to full scale); ``refitting`` is True inside the refinement
        (a projection may test a looser range before it than in it). If given and a region is out of range, it is refined by
        `peak_iterations` Griffin-Lim iterations with that projection in the
        loop: the phase moves until the audio fits the range with the target
        magnitude, instead of being clipped afterwards. Phase reconstruction
        does not keep the input's crest factor (a dense, peak-normalised loop
        came back peaking 8 dB over full scale), and clipping afterwards
        costs loudness (1.3-1.8 LU there) and adds distortion.
    peak_iterations : int
        Iterations of that refinement.

    Examples
    --------
    >>> inv = StreamingInversion(frame_length=512, frame_step=128, segment_frames=512,
    ...                          margin_frames=32, crossfade=2048, n_iter=100)
    >>> for k in range(n_segments):
    ...     out.append(inv.push(mag[:, k * 512 - 32 + offset: ...]))  # see `region_frames`
    >>> out.append(inv.finish())
    """

    def __init__(self, *, frame_length: int, frame_step: int, segment_frames: int,
                 margin_frames: int, crossfade: int, n_iter: int, batch: int = 1,
                 window="hann", seed: int = 0, link: int = 0, method: str = "adam",
                 keep_energy: bool | np.ndarray = False,
                 peak_projection: Callable[[np.ndarray, int], np.ndarray | None] | None = None,
                 peak_iterations: int = 16):
        if frame_length % frame_step:
            raise ValueError(f"frame_length ({frame_length}) must be a multiple of "
                             f"frame_step ({frame_step})")
        margin = margin_frames * frame_step
        if margin < frame_length or crossfade % 2 or not 0 < crossfade < margin:
            raise ValueError(f"need margin_frames * frame_step >= frame_length and 0 < crossfade "
                             f"< margin (even); received margin {margin}, crossfade {crossfade}")
        if segment_frames * frame_step <= crossfade:
            raise ValueError("a segment must be longer than the cross-fade")
        self.frame_length, self.frame_step = int(frame_length), int(frame_step)
        self.segment_frames, self.margin_frames = int(segment_frames), int(margin_frames)
        self.crossfade, self.n_iter, self.batch = int(crossfade), int(n_iter), int(batch)
        self.window, self.seed = window, int(seed)
        if link not in (0, 1, -1) or (link and batch != 2):
            raise ValueError(f"link must be 0, or 1 / -1 with batch=2; received link={link}")
        self.link = int(link)
        if method not in ("adam", "griffin_lim"):
            raise ValueError(f"method must be 'adam' or 'griffin_lim'; received {method!r}")
        self.method = method
        if isinstance(keep_energy, (bool, np.bool_)):
            self._bin_weights = np.ones(frame_length // 2 + 1) if keep_energy else None
        else:
            self._bin_weights = np.asarray(keep_energy, np.float64)
            if self._bin_weights.shape != (frame_length // 2 + 1,):
                raise ValueError(f"keep_energy weights must have shape ({frame_length // 2 + 1},); "
                                 f"received shape={self._bin_weights.shape}")
        self.keep_energy = self._bin_weights is not None
        self.peak_projection, self.peak_iterations = peak_projection, int(peak_iterations)
        self._pushed = 0  # regions pushed so far: where the next one starts
        self._win = _window(self.frame_length, window)
        self._tail: np.ndarray | None = None  # last region's samples [s1 - P, s1 + P)
        half = np.arange(self.crossfade) + 0.5
        self._fade_in = (0.5 - 0.5 * np.cos(np.pi * half / self.crossfade)).astype(np.float32)

    @property
    def region_frames(self) -> int:
        """Frames of magnitude each `push` takes: ``segment + 2 margin + 1``."""
        return self.segment_frames + 2 * self.margin_frames + 1

    @property
    def segment_samples(self) -> int:
        return self.segment_frames * self.frame_step

    @property
    def margin_samples(self) -> int:
        return self.margin_frames * self.frame_step

    def _phase_of(self, audio: np.ndarray, last_frame: int, bins: int) -> np.ndarray:
        """Phase of centred frames of ``audio`` ``(batch, n)`` that lie wholly inside it,
        up to ``last_frame``; NaN for the others."""
        n, h = self.frame_length, self.frame_step
        known = np.full((audio.shape[0], self.region_frames, bins), np.nan)
        first, last = n // (2 * h), min(last_frame, (audio.shape[1] - n // 2) // h)
        if last >= first:
            spectrum = _stft(np.asarray(audio, np.float64), self._win, h)
            known[:, first:last + 1] = np.angle(spectrum[:, first:last + 1])
        return known

    def _known_phase(self, bins: int) -> np.ndarray:
        """Phase of the written audio's frames inside the new region, NaN elsewhere."""
        if self._tail is None:
            return np.full((self.batch, self.region_frames, bins), np.nan)
        # Frames wholly inside the old audio [0, 2P) of this region, centred up to P:
        # the part the last region fitted with full context.
        return self._phase_of(self._tail, self.margin_frames, bins)

    def _invert(self, mag: np.ndarray, known: np.ndarray, length: int,
                n_iter: int | None = None) -> np.ndarray:
        n_iter = self.n_iter if n_iter is None else n_iter
        if self.method == "griffin_lim" or n_iter == 0:
            from vqkeras.phase.fast_griffin_lim import griffin_lim

            return griffin_lim(mag, frame_length=self.frame_length, frame_step=self.frame_step,
                               n_iter=n_iter, window=self.window, length=length, init="pghi",
                               seed=self.seed, known_phase=known)
        from vqkeras.phase.gradient_inversion import invert_magnitude

        return invert_magnitude(mag, frame_length=self.frame_length, frame_step=self.frame_step,
                                n_iter=n_iter, window=self.window, length=length,
                                seed=self.seed, known_phase=known)

    def _energy_gain(self, mag: np.ndarray, wave: np.ndarray) -> np.ndarray:
        """Per-signal gain that gives ``wave`` the segment frames' energy of ``mag``."""
        segment = slice(self.margin_frames, self.margin_frames + self.segment_frames)
        spectrum = _stft(np.asarray(wave, np.float64), self._win, self.frame_step)[:, segment]
        got = np.abs(spectrum) ** 2 @ self._bin_weights
        want = mag[:, segment].astype(np.float64) ** 2 @ self._bin_weights
        got, want = got.sum(axis=1), want.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.sqrt(want / got)
        return np.where(np.isfinite(gain), np.clip(gain, 0.5, 2.0), 1.0).astype(np.float32)

    def _fit_peaks(self, mag: np.ndarray, wave: np.ndarray, start: int) -> np.ndarray:
        """``wave``, or if `peak_projection` finds it out of range, refined to fit (class doc)."""
        projected = self.peak_projection(wave, start)
        if projected is None:
            return wave
        target = mag.astype(np.float64)
        w = np.asarray(projected, np.float64)
        for i in range(self.peak_iterations):
            if i:
                projected = self.peak_projection(w, start, True)
                if projected is not None:
                    w = projected
            spectrum = _stft(w, self._win, self.frame_step)
            unit = spectrum / np.maximum(np.abs(spectrum), 1e-12)  # the phase, as e^(i angle)
            w = _istft(target * unit, self._win, self.frame_step, w.shape[1])
        return w.astype(np.float32)

    def push(self, magnitude: np.ndarray) -> np.ndarray:
        """Invert the next region; return the samples that are now final.

        Parameters
        ----------
        magnitude : np.ndarray [shape=(batch, region_frames, bins)]
            Centred-frame magnitude of the region: for segment ``k``, global
            frames ``k * segment_frames - margin_frames`` to
            ``(k + 1) * segment_frames + margin_frames`` (frames before the
            signal's start may be anything quiet).

        Returns
        -------
        np.ndarray [shape=(batch, samples), float32]
            ``segment_samples - crossfade // 2`` samples for the first
            segment, ``segment_samples`` after that.
        """
        mag = np.asarray(magnitude, np.float32)
        if mag.shape[:2] != (self.batch, self.region_frames):
            raise ValueError(f"magnitude must have shape ({self.batch}, {self.region_frames}, "
                             f"bins). Received: shape={mag.shape}")
        length = self.segment_samples + 2 * self.margin_samples
        known = self._known_phase(mag.shape[2])
        if self.link:
            first = self._invert(mag[:1], known[:1], length)
            linked = self._phase_of(first, self.region_frames, mag.shape[2])
            if self.link < 0:
                linked = linked + np.pi
            # Edge frames (not wholly inside the region) keep the second signal's own phase.
            linked = np.where(np.isfinite(linked), linked, known[1:])
            wave = np.concatenate([first, self._invert(mag[1:], linked, length, n_iter=0)])
        else:
            wave = self._invert(mag, known, length)
        if self.keep_energy:
            wave = wave * self._energy_gain(mag, wave)[:, None]
        if self.peak_projection is not None:
            fitted = self._fit_peaks(mag, wave, self._pushed * self.segment_samples
                                     - self.margin_samples)
            if fitted is not wave and self.keep_energy:  # the refinement loses energy too
                fitted = fitted * self._energy_gain(mag, fitted)[:, None]
            wave = fitted
        self._pushed += 1
        p, x = self.margin_samples, self.crossfade // 2
        if self._tail is None:
            out = wave[:, p:p + self.segment_samples - x]
        else:
            old = self._tail[:, p - x:p + x]
            new = wave[:, p - x:p + x]
            faded = _crossfade(old, new, self._fade_in)
            out = np.concatenate([faded, wave[:, p + x:p + self.segment_samples - x]], axis=1)
        self._tail = wave[:, self.segment_samples:].astype(np.float32)
        return np.asarray(out, np.float32)

    def finish(self) -> np.ndarray:
        """The last region's samples after its segment: ``[s1 - X, s1 + P)``."""
        if self._tail is None:
            return np.zeros((self.batch, 0), np.float32)
        out = self._tail[:, self.margin_samples - self.crossfade // 2:]
        self._tail = None
        return out


def _stft(wave: np.ndarray, window: np.ndarray, hop: int) -> np.ndarray:
    """Centred-frame STFT ``(batch, n // hop + 1, bins)`` of ``(batch, n)`` audio (zero padded)."""
    n = len(window)
    padded = np.pad(wave, ((0, 0), (n // 2, n // 2)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n, axis=1)[:, ::hop]
    return np.fft.rfft(frames * window, axis=-1)


def _istft(spectrum: np.ndarray, window: np.ndarray, hop: int, length: int) -> np.ndarray:
    """Least-squares inverse of `_stft`: windowed overlap-add over the squared window's sum."""
    n = len(window)
    frames = np.fft.irfft(spectrum, n=n, axis=-1) * window
    batch, count = frames.shape[:2]
    out = np.zeros((batch, (count - 1) * hop + n))
    norm = np.zeros((count - 1) * hop + n)
    for r in range(n // hop):  # frames overlap n // hop times: add each hop-sized part
        part = frames[:, :, r * hop:(r + 1) * hop]
        out[:, r * hop:r * hop + count * hop] += part.reshape(batch, count * hop)
        norm[r * hop:r * hop + count * hop] += np.tile(window[r * hop:(r + 1) * hop] ** 2, count)
    return (out / np.maximum(norm, 1e-8))[:, n // 2:n // 2 + length]


def _crossfade(old: np.ndarray, new: np.ndarray, fade_in: np.ndarray) -> np.ndarray:
    """Cross-fade ``(batch, n)`` signals, keeping the level whatever their correlation.

    The two inversions of the overlap start from the same phase but are
    optimised separately, so they are only partly coherent (correlation
    ``rho``). A linear fade would dip by up to ``10 log10((1 + rho) / 2)`` dB
    in the middle; normalising the gains by ``sqrt(a^2 + b^2 + 2 rho a b)``
    keeps the expected energy constant (a correlation-adaptive fade).
    """
    rho = np.sum(old * new, axis=1) / np.maximum(
        np.sqrt(np.sum(old ** 2, axis=1) * np.sum(new ** 2, axis=1)), 1e-30)
    rho = np.clip(rho, 0.0, 1.0)[:, None]
    a, b = 1.0 - fade_in[None], fade_in[None]
    norm = np.sqrt(a * a + b * b + 2.0 * rho * a * b)
    return ((a * old + b * new) / norm).astype(np.float32)
