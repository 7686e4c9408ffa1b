"""Fast Griffin-Lim phase reconstruction in `keras.ops`, compiled and batched.

Also holds the STFT / inverse STFT pair that both phase-reconstruction methods
share. They follow `keras.ops.stft(..., center=True)` (and so
`librosa.stft(center=True, pad_mode="reflect")`) but are written with reshapes
and pads only, which makes them fast, differentiable and identical on every
backend. (TensorFlow's `keras.ops.istft` is off in the first and last few
hundred samples; ours is not.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vqkeras.phase._compile import compiled

_EPS = 1e-16


@dataclass(frozen=True)
class _StftParams:
    """Static STFT geometry; hashable so it can key the compile cache."""

    frame_length: int
    frame_step: int
    fft_length: int
    window_key: Any

    @property
    def overlap(self) -> int:
        """Number of hop-sized chunks one (zero-padded) frame spans."""
        return math.ceil(self.fft_length / self.frame_step)


def _window_array(window: Any, frame_length: int, fft_length: int) -> np.ndarray:
    """Periodic window of `frame_length` samples, zero-padded to `fft_length` (centred)."""
    if isinstance(window, str) and window.lower() in ("hann", "hanning"):
        # scipy.signal.get_window("hann", n) (periodic), without importing
        # scipy.signal (~1 s of a command's start).
        w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(frame_length) / frame_length)
    elif isinstance(window, str | tuple):
        from scipy.signal import get_window

        w = get_window(window, frame_length, fftbins=True)
    else:
        w = np.asarray(window, dtype="float64")
        if w.shape != (frame_length,):
            raise ValueError(
                f"A window array must have shape (frame_length,) = ({frame_length},). "
                f"Received: window.shape={w.shape}"
            )
    left = (fft_length - frame_length) // 2
    out = np.zeros(fft_length, dtype="float64")
    out[left : left + frame_length] = w
    return out


def _window_key(window: Any) -> Any:
    if isinstance(window, str | tuple):
        return window
    return np.asarray(window, dtype="float64").tobytes()


def check_magnitude(
    magnitude: Any, frame_length: int, frame_step: int, name: str = "magnitude"
) -> tuple[np.ndarray, bool]:
    """Validate a linear STFT magnitude; return it as float32 `(batch, frames, bins)`.

    Returns the array and whether the input was unbatched (rank 2).
    """
    if hasattr(magnitude, "numpy") or not isinstance(magnitude, np.ndarray):
        import keras

        if not isinstance(magnitude, np.ndarray):
            try:
                magnitude = keras.ops.convert_to_numpy(magnitude)
            except Exception as exc:  # noqa: BLE001 - re-raised as a user error
                raise ValueError(
                    f"`{name}` must be an array of shape (batch, frames, bins). "
                    f"Received: {type(magnitude).__name__}"
                ) from exc
    magnitude = np.asarray(magnitude)
    if np.iscomplexobj(magnitude):
        raise ValueError(
            f"`{name}` must be a real, non-negative STFT magnitude, not a complex STFT "
            f"(take np.abs first). Received: dtype={magnitude.dtype}"
        )
    if magnitude.ndim not in (2, 3):
        raise ValueError(
            f"`{name}` must have shape (batch, frames, bins) or (frames, bins). "
            f"Received: shape={magnitude.shape}"
        )
    unbatched = magnitude.ndim == 2
    if unbatched:
        magnitude = magnitude[None]
    if magnitude.shape[0] == 0 or magnitude.shape[1] == 0 or magnitude.shape[2] < 2:
        raise ValueError(
            f"`{name}` needs at least one item, one frame and two frequency bins. "
            f"Received: shape={magnitude.shape}"
        )
    magnitude = magnitude.astype("float32", copy=False)
    if not np.all(np.isfinite(magnitude)):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    if np.any(magnitude < 0):
        raise ValueError(
            f"`{name}` must be non-negative (a linear STFT magnitude). "
            f"Received: min={float(magnitude.min())}"
        )
    fft_length = 2 * (magnitude.shape[-1] - 1)
    if not isinstance(frame_length, int | np.integer) or not 0 < frame_length <= fft_length:
        raise ValueError(
            f"`frame_length` must be a positive int no larger than the FFT length implied by "
            f"the {magnitude.shape[-1]} bins ({fft_length}). Received: frame_length={frame_length}"
        )
    if not isinstance(frame_step, int | np.integer) or not 0 < frame_step <= frame_length:
        raise ValueError(
            f"`frame_step` must be a positive int no larger than frame_length={frame_length}. "
            f"Received: frame_step={frame_step}"
        )
    return magnitude, unbatched


def _stft_params(magnitude: np.ndarray, frame_length: int, frame_step: int, window: Any):
    fft_length = 2 * (magnitude.shape[-1] - 1)
    params = _StftParams(int(frame_length), int(frame_step), fft_length, _window_key(window))
    return params, _window_array(window, frame_length, fft_length)


def default_length(num_frames: int, frame_step: int) -> int:
    """Signal length that `center=True` STFT maps to `num_frames` (librosa's default)."""
    return (num_frames - 1) * frame_step


def _frame(x, p: _StftParams, num_frames: int):
    """Cut `(batch, samples)` into `(batch, frames, fft_length)` using reshapes, no gather."""
    from keras import ops

    k, hop = p.overlap, p.frame_step
    chunks = ops.reshape(x, (-1, num_frames + k - 1, hop))
    frames = ops.concatenate([chunks[:, j : j + num_frames, :] for j in range(k)], axis=-1)
    return frames[..., : p.fft_length]


def _overlap_add(frames, p: _StftParams):
    """Inverse of `_frame`: `(batch, frames, fft_length)` -> `(batch, (frames+k-1)*hop)`."""
    from keras import ops

    k, hop = p.overlap, p.frame_step
    num_frames = frames.shape[1]
    if k * hop > p.fft_length:
        frames = ops.pad(frames, [[0, 0], [0, 0], [0, k * hop - p.fft_length]])
    parts = ops.reshape(frames, (-1, num_frames, k, hop))
    total = None
    for j in range(k):
        shifted = ops.pad(parts[:, :, j, :], [[0, 0], [j, k - 1 - j], [0, 0]])
        total = shifted if total is None else total + shifted
    return ops.reshape(total, (-1, (num_frames + k - 1) * hop))


def _stft(x, p: _StftParams, window, num_frames: int):
    """Centred, reflect-padded STFT of `(batch, samples)` -> (real, imag) `(batch, frames, bins)`."""
    from keras import ops

    pad = p.fft_length // 2
    x = ops.pad(x, [[0, 0], [pad, pad]], mode="reflect")
    needed = (num_frames + p.overlap - 1) * p.frame_step
    have = x.shape[1]
    if needed > have:
        x = ops.pad(x, [[0, 0], [0, needed - have]])
    elif needed < have:
        x = x[:, :needed]
    frames = _frame(x, p, num_frames) * window
    return ops.rfft(frames, fft_length=p.fft_length)


def _istft_normaliser(p: _StftParams, window: np.ndarray, num_frames: int, length: int):
    """1 / (overlap-added squared window), cropped like the signal; 1 where it vanishes."""
    k, hop = p.overlap, p.frame_step
    w2 = np.zeros(k * hop)
    w2[: p.fft_length] = window**2
    total = np.zeros((num_frames + k - 1) * hop)
    for f in range(num_frames):
        total[f * hop : f * hop + k * hop] += w2
    tiny = np.finfo("float32").tiny
    inv = np.where(total > tiny, 1.0 / np.maximum(total, tiny), 1.0)
    start = p.fft_length // 2
    out = np.zeros(length)
    avail = inv[start : start + length]
    out[: avail.shape[0]] = avail
    return out.astype("float32")


def _istft(real, imag, p: _StftParams, window, inv_norm, length: int):
    """Least-squares inverse of `_stft` (librosa's istft), cropped/padded to `length`."""
    from keras import ops

    frames = ops.irfft((real, imag), fft_length=p.fft_length) * window
    y = _overlap_add(frames, p)
    start = p.fft_length // 2
    avail = y.shape[1] - start
    y = y[:, start : start + min(length, avail)]
    if length > avail:
        y = ops.pad(y, [[0, 0], [0, length - avail]])
    return y * inv_norm


def _magnitude(real, imag):
    from keras import ops

    return ops.sqrt(real * real + imag * imag)


def _make_griffin_lim(p: _StftParams, window_np: np.ndarray, num_frames: int, length: int,
                      n_iter: int, momentum: float):
    def run(mag, phase):
        from keras import ops

        # cos / sin here, not on the host: one float32 array crosses to the device,
        # and the device computes them (host numpy took ~1 s per 256 4-s clips).
        angle_re, angle_im = ops.cos(phase), ops.sin(phase)
        window = ops.convert_to_tensor(window_np.astype("float32"))
        inv_norm = ops.convert_to_tensor(_istft_normaliser(p, window_np, num_frames, length))
        # Overlap-added signal must be long enough for the forward STFT's frames.
        ratio = momentum / (1.0 + momentum)

        def body(_, state):
            a_re, a_im, prev_re, prev_im = state
            y = _istft(mag * a_re, mag * a_im, p, window, inv_norm, length)
            re, im = _stft(y, p, window, num_frames)
            # Fast Griffin-Lim: extrapolate from the previous projection (Perraudin 2013).
            n_re, n_im = re - ratio * prev_re, im - ratio * prev_im
            scale = 1.0 / (_magnitude(n_re, n_im) + _EPS)
            return n_re * scale, n_im * scale, re, im

        zeros = ops.zeros_like(mag)
        a_re, a_im, _, _ = ops.fori_loop(0, n_iter, body, (angle_re, angle_im, zeros, zeros))
        return _istft(mag * a_re, mag * a_im, p, window, inv_norm, length)

    return run


def initial_phase(shape: tuple[int, ...], init: str, seed: int) -> np.ndarray:
    """Phase (float32 radians) to start from: uniform random (`"random"`) or zero (`"zeros"`)."""
    if init == "random":
        return (2.0 * np.pi) * np.random.default_rng(seed).random(shape, dtype=np.float32)
    if init in ("zeros", "zero", None):
        return np.zeros(shape, "float32")
    raise ValueError(f"`init` must be 'random', 'zeros' or 'pghi'. Received: init={init!r}")


def griffin_lim(
    magnitude: Any,
    *,
    frame_length: int,
    frame_step: int,
    n_iter: int = 32,
    momentum: float = 0.99,
    window: str | tuple | np.ndarray = "hann",
    length: int | None = None,
    init: str = "random",
    seed: int = 0,
    known_phase: np.ndarray | None = None,
) -> np.ndarray:
    """Reconstruct waveforms from STFT magnitudes with fast Griffin-Lim.

    The whole loop runs as one compiled function (`jax.jit` or `tf.function`
    with XLA, chosen from `keras.backend.backend()`), batched over items;
    compiled functions are cached per shape and parameters.

    Parameters
    ----------
    magnitude : array [shape=(batch, frames, bins) or (frames, bins), non-negative]
        Linear STFT magnitude, time first, as from
        ``keras.ops.stft(x, frame_length, frame_step, fft_length, center=True)``;
        ``fft_length = 2 * (bins - 1)``.
    frame_length : int
        Window length in samples (at most the FFT length).
    frame_step : int
        Hop between frames in samples.
    n_iter : int
        Number of Griffin-Lim iterations (0 returns the initial phase's inverse).
    momentum : float
        Fast Griffin-Lim momentum; 0 gives classic Griffin-Lim, 0.99 is the usual choice.
    window : str, tuple or array
        Window name for `scipy.signal.get_window` (periodic), or an array of
        ``frame_length`` values.
    length : int, optional
        Output length; defaults to ``(frames - 1) * frame_step``.
    init : {"random", "zeros", "pghi"}
        Initial phase: uniform random, zero phase, or phase-gradient heuristic
        integration (`vqkeras.phase.pghi.pghi_phase`: a phase estimate from the
        magnitude's gradients, far closer than random; computed on the host).
    seed : int
        Seed of the random initial phase.
    known_phase : np.ndarray [shape=magnitude.shape], optional
        With ``init="pghi"``: phase to keep where finite (NaN elsewhere); PGHI
        continues it (see `vqkeras.phase.pghi.pghi_phase`).

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
    invert_magnitude : gradient-based inversion, usually started from this.

    References
    ----------
    Perraudin, Balazs, Sondergaard (2013), "A fast Griffin-Lim algorithm".

    Examples
    --------
    >>> mag = np.abs(librosa.stft(wave, n_fft=1024, hop_length=256)).T  # (frames, bins)
    >>> griffin_lim(mag, frame_length=1024, frame_step=256).shape
    (64000,)
    """
    mag, unbatched = check_magnitude(magnitude, frame_length, frame_step)
    if not isinstance(n_iter, int | np.integer) or n_iter < 0:
        raise ValueError(f"`n_iter` must be a non-negative int. Received: n_iter={n_iter}")
    if not 0.0 <= float(momentum) < 2.0:
        raise ValueError(f"`momentum` must be in [0, 2). Received: momentum={momentum}")
    p, window_np = _stft_params(mag, frame_length, frame_step, window)
    num_frames = mag.shape[1]
    length = default_length(num_frames, frame_step) if length is None else int(length)
    if length <= p.fft_length // 2:
        raise ValueError(
            f"`length` must exceed fft_length // 2 = {p.fft_length // 2} (reflect padding). "
            f"Received: length={length}"
        )
    if init == "pghi":
        from vqkeras.phase.pghi import pghi_phase

        if known_phase is not None:
            known_phase = np.asarray(known_phase, "float64").reshape(mag.shape)
        phase = pghi_phase(mag, frame_length=frame_length, frame_step=frame_step, window=window,
                           seed=seed, known_phase=known_phase).astype("float32")  # wrapped: exact
    elif known_phase is not None:
        raise ValueError(f"`known_phase` needs init='pghi'. Received: init={init!r}")
    else:
        phase = initial_phase(mag.shape, init, seed)
    key = ("griffin_lim", mag.shape, p, num_frames, length, int(n_iter), float(momentum))
    fn = compiled(key, lambda: _make_griffin_lim(p, window_np, num_frames, length,
                                                 int(n_iter), float(momentum)))
    out = to_numpy(fn(mag, phase)).astype("float32")
    return out[0] if unbatched else out


def to_numpy(x) -> np.ndarray:
    """A backend tensor as a numpy array (without importing Keras for JAX arrays)."""
    if type(x).__module__.startswith(("jax", "jaxlib", "numpy")):
        return np.asarray(x)
    import keras

    return keras.ops.convert_to_numpy(x)
