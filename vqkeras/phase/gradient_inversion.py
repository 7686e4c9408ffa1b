"""Gradient-based inversion of STFT magnitudes: Adam on the waveform, compiled and batched.

The thesis recovered audio by optimising a waveform, from near-silence, with
L-BFGS-B (up to 500 iterations, one clip at a time) so that its STFT magnitude
matched the predicted one. Here the same idea runs as one compiled loop
(`jax.lax.fori_loop` under `jax.jit`, or `tf.while_loop` under XLA), batched
over clips, started from a phase-gradient (PGHI) estimate, with Adam in `keras.ops`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vqkeras.phase._compile import compiled, value_and_grad
from vqkeras.phase.fast_griffin_lim import (
    _stft,
    _stft_params,
    check_magnitude,
    default_length,
    griffin_lim,
    to_numpy,
)

# The waveform is optimised in units of this multiple of each clip's RMS level,
# so one learning rate works for quiet and loud clips alike. (Adam's normalised
# step is well below 1 once gradients fluctuate; 3 with warm-up was best of
# 0.01..100 on rendered notes, from 16 to 200 steps.)
_STEP_UNIT = 3.0
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
_MIN_LR_RATIO = 0.1
_WARMUP_FRACTION = 0.2
# Level of the "zeros" start relative to the target's RMS: an exactly silent
# waveform has no gradient through |STFT|, so start from near-silence (like the thesis).
_ZEROS_LEVEL = 1e-3
_INITS = ("pghi", "griffin_lim", "random", "zeros")


def _rms_from_magnitude(mag: np.ndarray, window: np.ndarray, frame_step: int, length: int):
    """Per-item waveform RMS implied by the magnitude (Parseval, one-sided spectrum)."""
    fft_length = window.shape[0]
    energy = 2.0 * np.sum(mag.astype("float64") ** 2, axis=(1, 2))
    energy /= fft_length * np.sum(window**2) / frame_step
    return np.sqrt(energy / length).astype("float32")


def _make_inversion(p, window_np, num_frames, length, n_iter, learning_rate, min_lr_ratio):
    def run(target, x0, scale):
        from keras import ops

        window = ops.convert_to_tensor(window_np.astype("float32"))
        # Work in units of `scale` throughout (|STFT(scale * z)| = scale * |STFT(z)|), so
        # the loop is exactly the same for a clip and a quieter copy of it.
        scale_col = ops.expand_dims(scale, 1)
        target = target / ops.reshape(scale, (-1, 1, 1))
        # Per-item normaliser: the loss is the squared spectral convergence, per clip.
        energy = ops.sum(target * target, axis=(1, 2)) + 1e-12

        def loss_fn(z):
            re, im = _stft(z, p, window, num_frames)
            mag = ops.sqrt(re * re + im * im + 1e-12)
            err = ops.sum(ops.square(mag - target), axis=(1, 2)) / energy
            return ops.sum(err)

        grad_fn = value_and_grad(loss_fn)
        warmup = float(max(1, round(n_iter * _WARMUP_FRACTION)))

        def body(i, state):
            z, m, v = state
            _, g = grad_fn(z)
            t = ops.cast(i + 1, "float32")
            m = _BETA1 * m + (1.0 - _BETA1) * g
            v = _BETA2 * v + (1.0 - _BETA2) * g * g
            m_hat = m / (1.0 - ops.power(_BETA1, t))
            v_hat = v / (1.0 - ops.power(_BETA2, t))
            # Linear warm-up (Adam's first steps are sign-sized and would wreck a good
            # start), then cosine decay to min_lr_ratio * lr for fine polishing.
            step = ops.cast(i, "float32")
            warm = ops.minimum(1.0, (step + 1.0) / warmup)
            frac = step / max(n_iter - 1, 1)
            lr = learning_rate * warm * (
                min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + ops.cos(np.pi * frac)))
            z = z - lr * m_hat / (ops.sqrt(v_hat) + _ADAM_EPS)
            return z, m, v

        z0 = x0 / scale_col
        zeros = ops.zeros_like(z0)
        z, _, _ = ops.fori_loop(0, n_iter, body, (z0, zeros, zeros))
        return z * scale_col

    return run


def invert_magnitude(
    magnitude: Any,
    *,
    frame_length: int,
    frame_step: int,
    n_iter: int = 100,
    learning_rate: float = 0.3,
    init: str = "pghi",
    init_iter: int | None = None,
    window: str | tuple | np.ndarray = "hann",
    length: int | None = None,
    seed: int = 0,
    known_phase: np.ndarray | None = None,
) -> np.ndarray:
    """Recover waveforms whose STFT magnitude matches `magnitude`, by gradient descent.

    Starts from a phase-gradient (PGHI) estimate of the phase, then minimises,
    per clip, ``||(|STFT(x)| - M)||^2 / ||M||^2`` (the squared spectral
    convergence) over the waveform ``x`` with Adam and a cosine learning-rate
    decay. The waveform is parameterised in units of three times
    the clip's RMS level (estimated from `magnitude`), so the default learning
    rate suits quiet and loud clips alike. The whole loop is one compiled
    function (`jax.jit` / `tf.function`), batched over clips.

    Parameters
    ----------
    magnitude : array [shape=(batch, frames, bins) or (frames, bins), non-negative]
        Linear STFT magnitude, time first (``keras.ops.stft(..., center=True)``
        layout); ``fft_length = 2 * (bins - 1)``.
    frame_length, frame_step : int
        Window length and hop in samples.
    n_iter : int
        Adam steps.
    learning_rate : float
        Peak Adam learning rate (in units of 3x the clip's RMS level), reached
        after a linear warm-up over the first 20% of steps, then decayed to a
        tenth along a cosine.
    init : {"pghi", "griffin_lim", "random", "zeros"}
        Starting waveform. ``"pghi"`` (default, best measured): the phase from
        phase-gradient heuristic integration (`vqkeras.phase.pghi.pghi_phase`,
        on the host), followed by `init_iter` fast Griffin-Lim iterations.
        ``"griffin_lim"``: fast Griffin-Lim from random phase with `init_iter`
        iterations (the default before PGHI). ``"random"``: white noise at the
        target's level. ``"zeros"``: near-silence (the thesis's start; exactly
        zero would have no gradient).
    init_iter : int, optional
        Fast Griffin-Lim iterations after the start phase of ``"pghi"`` or
        ``"griffin_lim"``; default 0 for ``"pghi"`` (PGHI then Adam was best at equal
        time in `benchmarks/phase_reconstruction.py`), 16 for ``"griffin_lim"``.
    window : str, tuple or array
        Analysis window (periodic, `scipy.signal.get_window` names).
    length : int, optional
        Output length; defaults to ``(frames - 1) * frame_step``.
    seed : int
        Seed of the random parts of the start.
    known_phase : np.ndarray [shape=magnitude.shape], optional
        With ``init="pghi"``: phase to start from where finite (NaN
        elsewhere); PGHI continues it. Streaming reconstruction
        (`vqkeras.phase.StreamingInversion`) passes the phase of audio
        already written, so consecutive segments join without a seam.

    Returns
    -------
    np.ndarray [shape=(batch, length) or (length,), float32]

    Raises
    ------
    ValueError
        If the magnitude is complex, negative, non-finite or of the wrong rank,
        or an argument is out of range.

    See Also
    --------
    griffin_lim : the (faster, less accurate) projection method used as the start.

    Examples
    --------
    >>> mag = vqkeras.metrics.stft_magnitude(waves, 1024, 256)  # (batch, frames, 513)
    >>> invert_magnitude(mag, frame_length=1024, frame_step=256, n_iter=100).shape
    (8, 64000)
    """
    mag, unbatched = check_magnitude(magnitude, frame_length, frame_step)
    if init_iter is None:
        init_iter = 16 if init == "griffin_lim" else 0
    if not isinstance(init_iter, int | np.integer) or init_iter < 0:
        raise ValueError(f"`init_iter` must be a non-negative int. Received: init_iter={init_iter}")
    if not isinstance(n_iter, int | np.integer) or n_iter < 0:
        raise ValueError(f"`n_iter` must be a non-negative int. Received: n_iter={n_iter}")
    if not float(learning_rate) > 0:
        raise ValueError(f"`learning_rate` must be positive. Received: learning_rate={learning_rate}")
    if init not in _INITS:
        raise ValueError(
            f"`init` must be one of {', '.join(repr(i) for i in _INITS)}. Received: init={init!r}"
        )
    p, window_np = _stft_params(mag, frame_length, frame_step, window)
    num_frames = mag.shape[1]
    length = default_length(num_frames, frame_step) if length is None else int(length)
    if length <= p.fft_length // 2:
        raise ValueError(
            f"`length` must exceed fft_length // 2 = {p.fft_length // 2} (reflect padding). "
            f"Received: length={length}"
        )
    rms = _rms_from_magnitude(mag, window_np, frame_step, length)
    rng = np.random.default_rng(seed)
    if init in ("griffin_lim", "pghi"):
        x0 = griffin_lim(mag, frame_length=frame_length, frame_step=frame_step, n_iter=init_iter,
                         window=window, length=length, seed=seed,
                         init="pghi" if init == "pghi" else "random",
                         known_phase=known_phase if init == "pghi" else None)
    elif init == "random":
        x0 = rng.standard_normal((mag.shape[0], length)).astype("float32") * rms[:, None]
    else:
        x0 = rng.standard_normal((mag.shape[0], length)).astype("float32") * (rms[:, None] * _ZEROS_LEVEL)
    # Silent targets: any positive unit avoids dividing by zero; the result stays ~silent.
    scale = np.maximum(rms * _STEP_UNIT, 1e-8).astype("float32")
    key = ("invert", mag.shape, p, num_frames, length, int(n_iter), float(learning_rate))
    fn = compiled(key, lambda: _make_inversion(p, window_np, num_frames, length, int(n_iter),
                                               float(learning_rate), _MIN_LR_RATIO))
    out = to_numpy(fn(mag, x0.astype("float32"), scale)).astype("float32")
    return out[0] if unbatched else out
