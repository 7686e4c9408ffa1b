"""Loudness for the codec: ITU-R BS.1770 K-weighting, in the time and frequency domain.

The codec keeps each segment's loudness by comparing, at encode time, the
K-weighted energy of the input's STFT with that of the decoded spectrogram
(the decoder network's output, before phase reconstruction), and storing the
ratio as a per-segment gain correction. `k_weight_power` gives the K-weighting
filter's power response at any frequency (below 24 kHz) from the standard's
two 48-kHz biquads, so no filter has to be redesigned for 16 kHz.

`integrated_loudness` is a plain BS.1770-4 implementation (mono or
multichannel, 400-ms blocks with 75 % overlap, absolute gate at -70 LUFS,
relative gate at -10 LU) used by the benchmark and for checks.
"""

from __future__ import annotations

import numpy as np

# BS.1770-4, table 1 and 2: the pre-filter (high shelf) and the RLB high-pass at 48 kHz.
_SHELF = (np.array([1.53512485958697, -2.69169618940638, 1.19839281085285]),
          np.array([1.0, -1.69065929318241, 0.73248077421585]))
_HIGHPASS = (np.array([1.0, -2.0, 1.0]), np.array([1.0, -1.99004745483398, 0.99007225036621]))
_REFERENCE_RATE = 48000


def _biquad_power(b: np.ndarray, a: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    z = np.exp(-2j * np.pi * np.asarray(freqs, np.float64) / _REFERENCE_RATE)
    num = b[0] + b[1] * z + b[2] * z * z
    den = a[0] + a[1] * z + a[2] * z * z
    return np.abs(num / den) ** 2


def k_weight_power(freqs: np.ndarray) -> np.ndarray:
    """Power response ``|H(f)|^2`` of the BS.1770 K-weighting at frequencies ``freqs`` (Hz)."""
    freqs = np.clip(np.asarray(freqs, np.float64), 0.0, _REFERENCE_RATE / 2)
    return _biquad_power(*_SHELF, freqs) * _biquad_power(*_HIGHPASS, freqs)


def k_weighted_energy(magnitude: np.ndarray, sample_rate: int) -> np.ndarray:
    """K-weighted energy per clip of STFT magnitudes ``(batch, frames, bins)``.

    Only ratios of these values mean anything (the STFT's scale cancels).
    """
    magnitude = np.asarray(magnitude, np.float64)
    freqs = np.linspace(0.0, sample_rate / 2, magnitude.shape[-1])
    return np.einsum("btf,f->b", magnitude ** 2, k_weight_power(freqs))


def _k_filter(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    from scipy.signal import lfilter, resample_poly

    # The standard's coefficients are for 48 kHz: resample there (loudness is
    # unchanged by it, up to the content above the input's Nyquist: none).
    if sample_rate != _REFERENCE_RATE:
        from math import gcd

        g = gcd(_REFERENCE_RATE, int(sample_rate))
        audio = resample_poly(audio, _REFERENCE_RATE // g, int(sample_rate) // g, axis=0)
    for b, a in (_SHELF, _HIGHPASS):
        audio = lfilter(b, a, audio, axis=0)
    return audio


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness (LUFS) of ``audio`` ``(samples,)`` or ``(samples, channels)``.

    Channels are weighted 1.0 (the standard's weights for L, R and C).
    Returns ``-inf`` for a signal with no block above the absolute gate.
    """
    audio = np.asarray(audio, np.float64)
    if audio.ndim == 1:
        audio = audio[:, None]
    filtered = _k_filter(audio, sample_rate)
    block, hop = int(0.4 * _REFERENCE_RATE), int(0.1 * _REFERENCE_RATE)
    if len(filtered) < block:
        filtered = np.pad(filtered, ((0, block - len(filtered)), (0, 0)))
    starts = np.arange(0, len(filtered) - block + 1, hop)
    power = np.cumsum(np.concatenate([np.zeros((1, filtered.shape[1])), filtered ** 2]), axis=0)
    # Mean square of each block and channel, summed over channels.
    z = ((power[starts + block] - power[starts]) / block).sum(axis=1)

    def lufs(p):
        return -0.691 + 10.0 * np.log10(p)

    with np.errstate(divide="ignore"):
        blocks = lufs(z)
    gated = z[blocks > -70.0]
    if gated.size == 0:
        return float("-inf")
    relative = lufs(gated.mean()) - 10.0
    with np.errstate(divide="ignore"):
        kept = gated[lufs(gated) > relative]
    return float(lufs(kept.mean()))
