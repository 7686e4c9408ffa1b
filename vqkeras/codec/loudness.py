"""Loudness for the codec: ITU-R BS.1770 K-weighting and gating, in the time and frequency domain.

The codec keeps each segment's loudness with a per-segment gain correction,
chosen at encode time so that a BS.1770 meter reads the same on the decoded
segment as on the input. The input side is measured exactly: the K-filtered
signal's energy in 4-ms *slots* (`k_filtered_energy`), gated in 400-ms blocks
as the meter does (`gated_loudness`); the K-filter is designed for the
model's rate (`k_filter_coefficients`). The output side is predicted from
the decoded spectrogram (the decoder network's output, before phase
reconstruction, which the decoder then scales to that spectrogram's
K-weighted energy): K-weighted frame energies (`k_weight_power` of the same
filter) spread over the same slots. Both gates matter: a clip with a
short sound in digital silence is read over the blocks above -70 LUFS
(absolute) and within 10 LU of their mean (relative), and the decoded
version's tail and noise floor shift those blocks, so the correction is
solved with the output's gates applied to the corrected level
(`matching_gain_db`), not taken as a ratio of energies.

`integrated_loudness` is a plain BS.1770-4 implementation (mono or
multichannel, 400-ms blocks with 75 % overlap, absolute gate at -70 LUFS,
relative gate at -10 LU) used by the benchmark and for checks.
"""

from __future__ import annotations

import math

import numpy as np

# BS.1770-4, table 1 and 2: the pre-filter (high shelf) and the RLB high-pass at 48 kHz.
_SHELF = (np.array([1.53512485958697, -2.69169618940638, 1.19839281085285]),
          np.array([1.0, -1.69065929318241, 0.73248077421585]))
_HIGHPASS = (np.array([1.0, -2.0, 1.0]), np.array([1.0, -1.99004745483398, 0.99007225036621]))
_REFERENCE_RATE = 48000
# The analog prototypes behind those tables (for other sample rates).
_SHELF_HZ, _SHELF_DB, _SHELF_Q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
_SHELF_VB_EXPONENT = 0.4996667741545416
_HIGHPASS_HZ, _HIGHPASS_Q = 38.13547087602444, 0.5003270373238773
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0


def _biquad_power(b: np.ndarray, a: np.ndarray, freqs: np.ndarray,
                  rate: float = _REFERENCE_RATE) -> np.ndarray:
    z = np.exp(-2j * np.pi * np.asarray(freqs, np.float64) / rate)
    num = b[0] + b[1] * z + b[2] * z * z
    den = a[0] + a[1] * z + a[2] * z * z
    return np.abs(num / den) ** 2


def k_weight_power(freqs: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
    """Power response ``|H(f)|^2`` of the BS.1770 K-weighting at frequencies ``freqs`` (Hz).

    By default the standard's 48-kHz filter; with ``sample_rate``, the filter
    `k_filter_coefficients` designs for that rate (as `k_filtered_energy`
    applies it: within 0.15 dB of the 48-kHz one below 7 kHz at 16 kHz).
    """
    if sample_rate is None:
        freqs = np.clip(np.asarray(freqs, np.float64), 0.0, _REFERENCE_RATE / 2)
        return _biquad_power(*_SHELF, freqs) * _biquad_power(*_HIGHPASS, freqs)
    freqs = np.clip(np.asarray(freqs, np.float64), 0.0, sample_rate / 2)
    shelf, highpass = k_filter_coefficients(sample_rate)
    return (_biquad_power(*shelf, freqs, sample_rate)
            * _biquad_power(*highpass, freqs, sample_rate))


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


def _lufs(mean_square: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return -0.691 + 10.0 * np.log10(mean_square)


def _gate(z: np.ndarray) -> float:
    """Integrated loudness (LUFS) of per-block mean squares ``z`` (summed over channels)."""
    gated = z[_lufs(z) > ABSOLUTE_GATE_LUFS]
    if gated.size == 0:
        return float("-inf")
    kept = gated[_lufs(gated) > _lufs(gated.mean()) + RELATIVE_GATE_LU]
    return float(_lufs(kept.mean()))


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
    return _gate(((power[starts + block] - power[starts]) / block).sum(axis=1))


def k_filter_coefficients(sample_rate: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The K-weighting's two biquads ``((b, a), (b, a))`` designed for ``sample_rate``.

    Bilinear transforms of the analog high shelf and RLB high-pass that the
    standard's 48-kHz tables come from (at 48 kHz they give the tables to
    ~1e-9), so a signal can be K-filtered at its own rate without resampling.
    """
    fs = float(sample_rate)
    k = math.tan(math.pi * _SHELF_HZ / fs)
    vh = 10.0 ** (_SHELF_DB / 20.0)
    vb = vh ** _SHELF_VB_EXPONENT
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = (np.array([vh + vb * k / _SHELF_Q + k * k, 2.0 * (k * k - vh),
                       vh - vb * k / _SHELF_Q + k * k]) / a0,
             np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _SHELF_Q + k * k) / a0]))
    k = math.tan(math.pi * _HIGHPASS_HZ / fs)
    a0 = 1.0 + k / _HIGHPASS_Q + k * k
    highpass = (np.array([1.0, -2.0, 1.0]),
                np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HIGHPASS_Q + k * k) / a0]))
    return shelf, highpass


def k_filtered_energy(audio: np.ndarray, sample_rate: int, slot: int) -> np.ndarray:
    """Energy of the K-filtered ``audio`` ``(samples,)`` in consecutive ``slot``-sample slots.

    The filter runs at ``sample_rate`` (`k_filter_coefficients`), so a
    block's mean square is its slots' sum over its sample count. A trailing
    partial slot is dropped.
    """
    from scipy.signal import lfilter

    filtered = np.asarray(audio, np.float64)
    for b, a in k_filter_coefficients(sample_rate):
        filtered = lfilter(b, a, filtered)
    slots = len(filtered) // slot
    return np.sum(filtered[:slots * slot].reshape(slots, slot) ** 2, axis=1)


def gated_loudness(slot_energy: np.ndarray, slot: int, sample_rate: int) -> float:
    """BS.1770 integrated loudness (LUFS) of a signal given as its K-weighted slot energies.

    Blocks of 400 ms start every 100 ms from the first slot, as a meter's
    blocks start at the first sample; a signal shorter than a block is one
    block, zero-padded. ``0.1 s * sample_rate`` must be a multiple of ``slot``.
    """
    e = np.asarray(slot_energy, np.float64)
    hop = round(0.1 * sample_rate / slot)
    if hop * slot != round(0.1 * sample_rate):
        raise ValueError(f"100 ms is not a whole number of {slot}-sample slots at {sample_rate} Hz")
    block = 4 * hop
    if len(e) < block:
        e = np.pad(e, (0, block - len(e)))
    cumulative = np.concatenate([[0.0], np.cumsum(e)])
    starts = np.arange(0, len(e) - block + 1, hop)
    return _gate((cumulative[starts + block] - cumulative[starts]) / (block * slot))


def matching_gain_db(reference: np.ndarray, estimate: np.ndarray, slot: int,
                     sample_rate: int, max_iterations: int = 8) -> float:
    """Gain (dB) that brings ``estimate``'s gated loudness to ``reference``'s.

    Both are K-weighted slot energies (`k_filtered_energy`) of the same
    span. The gates make loudness non-linear in the gain (a louder version
    lets more quiet blocks through the absolute gate), so the gain is
    refined until the meter agrees to 0.01 LU. Where either side has no
    block above the absolute gate (a very quiet segment), the ratio of
    ungated energies is used instead.
    """
    reference = np.asarray(reference, np.float64)
    estimate = np.asarray(estimate, np.float64)
    if not np.any(reference > 0) or not np.any(estimate > 0):
        return 0.0
    target = gated_loudness(reference, slot, sample_rate)
    gain = 0.0
    if np.isfinite(target):
        for _ in range(max_iterations):
            level = gated_loudness(estimate * 10.0 ** (gain / 10.0), slot, sample_rate)
            if not np.isfinite(level):
                break
            gain += target - level
            if abs(target - level) < 0.01:
                return gain
        if np.isfinite(gated_loudness(estimate * 10.0 ** (gain / 10.0), slot, sample_rate)):
            return gain
    return float(10.0 * np.log10(reference.sum() / estimate.sum()))
