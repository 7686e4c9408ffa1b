"""Phase-gradient heuristic integration (PGHI): a phase estimate from the magnitude alone.

For a Gaussian window ``g(t) = exp(-pi t^2 / lam)`` the STFT phase gradient is
a function of the log-magnitude gradient (Portnoff; Prusa, Balazs, Sondergaard
2017). With the phase measured relative to each window's centre:

- along time: ``d phi / dt = 2 pi f + (1 / lam) d log|X| / df``
  (instantaneous frequency; ``f`` in cycles per sample),
- along frequency: ``d phi / df = -lam d log|X| / dt`` (minus the group delay).

Other windows are treated as the Gaussian of similar width (``lam`` =
0.25645 frame_length^2 for Hann). The gradients are integrated from the
loudest coefficient outwards (a max-heap over the magnitude, so the phase
follows the ridges of the spectrogram where it is reliable); coefficients more
than `tol_db` below the loudest get a random phase. Runs on the host (numpy,
the integration compiled with numba, which librosa already depends on); it is
not differentiable and needs no Keras backend.
"""

from __future__ import annotations

import os

import numpy as np

# Gaussian-equivalent time-frequency ratio lam / frame_length^2 of common windows
# (Prusa et al. 2017, Table 1).
_LAMBDA_RATIO = {"hann": 0.25645, "hanning": 0.25645, "hamming": 0.29794,
                 "blackman": 0.17954}


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def window_lambda(window, frame_length: int) -> float:
    """Time-frequency ratio ``lam`` (samples^2) of the Gaussian that approximates `window`.

    Parameters
    ----------
    window : str, tuple or array
        A name in the table (hann, hamming, blackman), ``("gaussian", std)``, or an
        array (its ``lam`` is fitted from its second moment).
    frame_length : int
        Window length in samples.
    """
    if isinstance(window, str) and window.lower() in _LAMBDA_RATIO:
        return _LAMBDA_RATIO[window.lower()] * frame_length**2
    if isinstance(window, tuple) and window and window[0] == "gaussian":
        return 2.0 * np.pi * float(window[1]) ** 2  # exp(-t^2 / (2 std^2)) = exp(-pi t^2 / lam)
    if isinstance(window, str | tuple):
        from scipy.signal import get_window

        window = get_window(window, frame_length, fftbins=True)
    w = np.abs(np.asarray(window, dtype="float64"))
    t = np.arange(w.shape[0]) - (w.shape[0] - 1) / 2.0
    # A Gaussian's squared window has variance lam / (4 pi); match that.
    var = np.sum(t**2 * w**2) / max(np.sum(w**2), 1e-300)
    return float(4.0 * np.pi * var)


def pghi_phase(magnitude: np.ndarray, *, frame_length: int, frame_step: int,
               window="hann", tol_db: float = 100.0, seed: int = 0,
               known_phase: np.ndarray | None = None) -> np.ndarray:
    """Phase estimate of a centred-window STFT from its magnitude by PGHI.

    Parameters
    ----------
    magnitude : np.ndarray [shape=(batch, frames, bins)]
        Linear STFT magnitude, time first, ``fft_length = 2 * (bins - 1)``, in the
        convention of `keras.ops.stft` / `librosa.stft` (window centred in the frame).
    frame_length, frame_step : int
        Window length and hop in samples.
    window : str, tuple or array
        The analysis window (sets the Gaussian ``lam``; see `window_lambda`).
    tol_db : float
        Coefficients more than this far below the item's loudest one get a random phase.
    seed : int
        Seed of that random phase.
    known_phase : np.ndarray [shape=magnitude.shape], optional
        Phase to keep where it is finite (NaN elsewhere), in the convention of
        the result. The integration starts from these coefficients, so the
        estimate continues them: streaming reconstruction passes the phase of
        audio it has already written (`vqkeras.phase.StreamingInversion`).

    Returns
    -------
    np.ndarray [shape=magnitude.shape, float64]
        Phase in radians in ``[-pi, pi)``, in the same convention as ``np.angle`` of the STFT.
    """
    mag = np.asarray(magnitude, dtype="float64")
    if mag.ndim != 3:
        raise ValueError(f"`magnitude` must have shape (batch, frames, bins). Received: shape={mag.shape}")
    batch, frames, bins = mag.shape
    fft_length = 2 * (bins - 1)
    lam = window_lambda(window, frame_length)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(-np.pi, np.pi, mag.shape)
    peak = mag.reshape(batch, -1).max(axis=1)
    floor = np.maximum(peak * 10.0 ** (-tol_db / 20.0), np.finfo("float64").tiny)
    k = np.arange(bins, dtype="float64")
    if known_phase is None:
        known = np.zeros(mag.shape, bool)
    else:
        known_phase = np.asarray(known_phase, dtype="float64")
        if known_phase.shape != mag.shape:
            raise ValueError(f"`known_phase` must have the magnitude's shape {mag.shape}. "
                             f"Received: shape={known_phase.shape}")
        known = np.isfinite(known_phase)
        # Internally the phase is measured from the window centre (see the return).
        phase = np.where(known, known_phase + np.pi * k, phase)
    from vqkeras.phase._heap_integration import integrate

    def one_item(b: int) -> None:
        logmag = np.log(np.maximum(mag[b], floor[b] * 1e-3))
        # Phase measured from the window's centre: time step = 2 pi f hop + correction.
        dlog_dk = np.gradient(logmag, axis=1) if bins > 1 else np.zeros_like(logmag)
        tgrad = frame_step * (2.0 * np.pi * k / fft_length + fft_length / lam * dlog_dk)
        dlog_dm = np.gradient(logmag, axis=0) if frames > 1 else np.zeros_like(logmag)
        fgrad = -lam / (frame_step * fft_length) * dlog_dm
        item = np.ascontiguousarray(phase[b])
        integrate(logmag, tgrad, fgrad, mag[b] > floor[b], item, np.ascontiguousarray(known[b]))
        # A frame's FFT starts half a frame before the window centre: bin k turns by -pi k.
        # Wrapped to [-pi, pi) like np.angle: integrated phase grows to ~1e5 rad, where
        # float32 (what the device loops take) would lose ~0.01 rad.
        phase[b] = np.mod(item - np.pi * k + np.pi, 2.0 * np.pi) - np.pi

    workers = min(batch, _cpu_count())
    if workers > 1:
        # Items are independent and the integration releases the GIL (numba nogil),
        # as do numpy's large operations: the batch spreads over the cores.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one_item, range(batch)))
    else:
        for b in range(batch):
            one_item(b)
    return phase
