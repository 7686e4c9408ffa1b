"""Numpy metrics for spectrograms and waveforms (numpy in, numpy out).

Used by evaluation, the phase-reconstruction callback and the benchmarks. Batched
inputs give one value per item (a numpy array); single items give a float.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "log_spectral_distance",
    "snr_db",
    "spectral_convergence_db",
    "spectrogram_mse",
    "spectrogram_sse",
    "stft_magnitude",
]

_TINY = 1e-12


def _pair(a, b, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if np.iscomplexobj(a) or np.iscomplexobj(b):
        raise ValueError(f"`{name_a}` and `{name_b}` must be real. Received dtypes "
                         f"{a.dtype} and {b.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"`{name_a}` and `{name_b}` must have the same shape. "
                         f"Received: {a.shape} and {b.shape}")
    if a.ndim == 0 or a.size == 0:
        raise ValueError(f"`{name_a}` must be a non-empty array. Received: shape={a.shape}")
    return a.astype("float64"), b.astype("float64")


def _per_item(values: np.ndarray, batched: bool):
    return values if batched else float(values[0])


def spectral_convergence_db(target_magnitude, estimate_magnitude, *, batched: bool | None = None):
    """Spectral convergence ``20 log10(||T - E||_F / ||T||_F)`` in dB, per item.

    Parameters
    ----------
    target_magnitude, estimate_magnitude : np.ndarray [shape=(batch, frames, bins) or (frames, bins)]
        Linear STFT magnitudes of the same shape.
    batched : bool, optional
        Whether the first axis is the batch. Default: rank 3 is batched, rank 2 is one item.

    Returns
    -------
    float or np.ndarray [shape=(batch,)]
        Lower is better; -inf for a perfect match. A silent target gives +inf
        unless the estimate is silent too (then -inf).
    """
    t, e = _pair(target_magnitude, estimate_magnitude, "target_magnitude", "estimate_magnitude")
    batched = t.ndim >= 3 if batched is None else batched
    t2 = t.reshape(t.shape[0] if batched else 1, -1)
    e2 = e.reshape(t2.shape)
    num = np.sqrt(np.sum((t2 - e2) ** 2, axis=1))
    den = np.sqrt(np.sum(t2**2, axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(num == 0, 0.0, num / den)
        out = 20.0 * np.log10(ratio)
    return _per_item(out, batched)


def stft_magnitude(wave, frame_length: int = 1024, frame_step: int = 256,
                   fft_length: int | None = None) -> np.ndarray:
    """Linear STFT magnitude, time first, as `keras.ops.stft(center=True)` computes it.

    Uses ``librosa.stft(center=True, pad_mode="reflect", window="hann")``.

    Parameters
    ----------
    wave : np.ndarray [shape=(..., samples)]
    frame_length, frame_step : int
        Window length and hop in samples.
    fft_length : int, optional
        FFT size; defaults to ``frame_length``.

    Returns
    -------
    np.ndarray [shape=(..., frames, fft_length // 2 + 1), float32]
    """
    import librosa

    wave = np.asarray(wave, dtype="float32")
    spec = librosa.stft(wave, n_fft=fft_length or frame_length, hop_length=frame_step,
                        win_length=frame_length, window="hann", center=True, pad_mode="reflect")
    return np.swapaxes(np.abs(spec), -1, -2).astype("float32")


def log_spectral_distance(reference_wave, estimate_wave, *, n_fft: int = 1024, hop: int = 256,
                          floor_db: float = 80.0):
    """Log-spectral distance in dB between two waveforms.

    Power spectra in dB are floored at `floor_db` below the reference clip's
    peak (for both signals), then the RMS difference over bins is averaged over
    frames.

    Parameters
    ----------
    reference_wave, estimate_wave : np.ndarray [shape=(samples,) or (batch, samples)]
    n_fft, hop : int
        STFT size and hop.
    floor_db : float
        Dynamic range kept below each reference clip's peak.

    Returns
    -------
    float or np.ndarray [shape=(batch,)]
    """
    ref, est = _pair(reference_wave, estimate_wave, "reference_wave", "estimate_wave")
    if ref.ndim > 2:
        raise ValueError(f"Waveforms must have shape (samples,) or (batch, samples). "
                         f"Received: shape={ref.shape}")
    batched = ref.ndim == 2
    ref, est = np.atleast_2d(ref), np.atleast_2d(est)
    p_ref = stft_magnitude(ref, n_fft, hop).astype("float64") ** 2
    p_est = stft_magnitude(est, n_fft, hop).astype("float64") ** 2
    db_ref = 10.0 * np.log10(np.maximum(p_ref, _TINY))
    db_est = 10.0 * np.log10(np.maximum(p_est, _TINY))
    floor = db_ref.max(axis=(1, 2), keepdims=True) - floor_db
    db_ref = np.maximum(db_ref, floor)
    db_est = np.maximum(db_est, floor)
    per_frame = np.sqrt(np.mean((db_ref - db_est) ** 2, axis=2))
    return _per_item(per_frame.mean(axis=1), batched)


def snr_db(reference_wave, estimate_wave):
    """Signal-to-noise ratio ``10 log10(sum ref^2 / sum (ref - est)^2)`` in dB, per item.

    Parameters
    ----------
    reference_wave, estimate_wave : np.ndarray [shape=(samples,) or (batch, samples)]

    Returns
    -------
    float or np.ndarray [shape=(batch,)]
        +inf for a perfect estimate.
    """
    ref, est = _pair(reference_wave, estimate_wave, "reference_wave", "estimate_wave")
    batched = ref.ndim >= 2
    ref = ref.reshape(ref.shape[0] if batched else 1, -1)
    est = est.reshape(ref.shape)
    signal = np.sum(ref**2, axis=1)
    noise = np.sum((ref - est) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(signal) - 10.0 * np.log10(noise)
    return _per_item(out, batched)


def spectrogram_sse(a, b):
    """Per-example sum of squared errors (the thesis's reported "MSE").

    The first axis is the batch; every other axis is summed.

    Returns
    -------
    np.ndarray [shape=(batch,)]
    """
    a, b = _pair(a, b, "a", "b")
    return np.sum((a - b).reshape(a.shape[0], -1) ** 2, axis=1)


def spectrogram_mse(a, b):
    """Per-example mean squared error; the first axis is the batch.

    Returns
    -------
    np.ndarray [shape=(batch,)]
    """
    a, b = _pair(a, b, "a", "b")
    return np.mean((a - b).reshape(a.shape[0], -1) ** 2, axis=1)
