"""`Spectrogram`: STFT magnitude / power / dB (optionally mel) as a Keras layer.

Built on `keras.ops.stft`, so it runs (and reloads from a `.keras` file) on
every Keras backend. Output is time first, ``(batch, frames, bins)``, like the
rest of vqkeras (see docs/design.md).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from vqkeras.layers.quantizer_base import internal_dtype

_MODES = ("magnitude", "power", "db")
# Windows that keras.ops.stft accepts by name; any other scipy window name is
# turned into an explicit tensor at build time.
_KERAS_WINDOWS = ("hann", "hamming")
# Power floor before sqrt: keeps the gradient of sqrt finite at silent bins
# while staying far below anything float32 audio produces.
_POWER_FLOOR = 1e-30


def mel_weight_matrix(
    *,
    num_mel_bins: int,
    fft_length: int,
    sample_rate: int,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    """Slaney-style mel filterbank (librosa's default: ``htk=False, norm="slaney"``).

    Parameters
    ----------
    num_mel_bins : int
        Number of triangular mel filters.
    fft_length : int
        FFT size; the matrix has ``fft_length // 2 + 1`` rows.
    sample_rate : int
        Sampling rate in Hz.
    fmin, fmax : float
        Frequency range in Hz (``fmax`` defaults to ``sample_rate / 2``).

    Returns
    -------
    np.ndarray [shape=(fft_length // 2 + 1, num_mel_bins), float32]
        Multiply a ``(..., bins)`` spectrogram on the right by it.
    """
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)

    # Slaney mel scale: linear below 1 kHz, logarithmic above.
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= min_log_hz,
                        min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                        f / f_sp)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.linspace(0.0, sample_rate / 2.0, fft_length // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), num_mel_bins + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    # Slaney normalisation: each filter has unit area.
    weights *= (2.0 / (mel_f[2:num_mel_bins + 2] - mel_f[:num_mel_bins]))[:, None]
    return weights.T.astype("float32")


@keras.saving.register_keras_serializable(package="vqkeras")
class Spectrogram(keras.layers.Layer):
    """Short-time Fourier magnitude, power or dB spectrogram (optionally mel).

    Args:
        frame_length: Window length in samples.
        frame_step: Hop between frames in samples (``0 < frame_step <= frame_length``).
        fft_length: FFT size (``>= frame_length``); defaults to ``frame_length``.
        window: A scipy window name (``"hann"``, ``"hamming"``, ``"blackman"``...,
            periodic as in librosa) or ``None`` for a rectangular window.
        center: Pad ``fft_length // 2`` samples on both sides with reflection, so
            frame ``t`` is centred on sample ``t * frame_step`` (as
            ``librosa.stft(center=True, pad_mode="reflect")``).
        mode: ``"magnitude"`` (``|X|``), ``"power"`` (``|X|**2``) or ``"db"``
            (``10 log10(max(|X|**2, 10**(db_floor / 10)))``, i.e. magnitude dB
            relative to 1.0 and floored at ``db_floor``).
        db_floor: Floor in dB (negative) for ``mode="db"``.
        num_mel_bins: If set, apply a Slaney mel filterbank (librosa's default)
            to the magnitude (``"magnitude"``) or power (``"power"``, ``"db"``).
        sample_rate: Sampling rate in Hz; only used for the mel filterbank.
        **kwargs: Base `keras.layers.Layer` arguments (``name``, ``dtype``...).

    Input shape:
        ``(batch, samples)`` or ``(batch, samples, 1)``, float.

    Output shape:
        ``(batch, frames, bins)`` with ``frames = 1 + samples // frame_step``
        when ``center=True`` (else ``1 + (samples - fft_length) // frame_step``)
        and ``bins = fft_length // 2 + 1`` (or ``num_mel_bins``).

    Mixed precision:
        Under ``mixed_bfloat16`` / ``mixed_float16`` the input (any float
        dtype) is cast to float32, the STFT, power, mel and dB run in float32
        and the output is cast to the compute dtype. float16 tops out at 65504:
        a ``"power"`` spectrogram of loud audio overflows to ``inf`` there, so
        use ``"db"``/``"magnitude"`` or give this layer ``dtype="float32"``.

    Raises:
        ValueError: A bad argument, an input of the wrong rank or a non-float input.

    Example:

    >>> x = np.zeros((2, 16000), "float32")
    >>> Spectrogram(frame_length=512, frame_step=128)(x).shape
    (2, 126, 257)
    """

    def __init__(
        self,
        *,
        frame_length: int = 1024,
        frame_step: int = 256,
        fft_length: int | None = None,
        window: str | None = "hann",
        center: bool = True,
        mode: str = "magnitude",
        db_floor: float = -80.0,
        num_mel_bins: int | None = None,
        sample_rate: int = 16000,
        **kwargs,
    ):
        if not isinstance(frame_length, int) or frame_length <= 0:
            raise ValueError(f"`frame_length` must be a positive integer. Received: frame_length={frame_length}")
        if not isinstance(frame_step, int) or not 0 < frame_step <= frame_length:
            raise ValueError("`frame_step` must be a positive integer not greater than `frame_length`. "
                             f"Received: frame_step={frame_step}, frame_length={frame_length}")
        if fft_length is not None and (not isinstance(fft_length, int) or fft_length < frame_length):
            raise ValueError("`fft_length` must be an integer >= `frame_length`. "
                             f"Received: fft_length={fft_length}, frame_length={frame_length}")
        if window is not None:
            if not isinstance(window, str):
                raise ValueError(f"`window` must be a scipy window name or None. Received: window={window!r}")
            import scipy.signal

            try:
                scipy.signal.get_window(window, frame_length)
            except ValueError as err:
                raise ValueError(f"Unknown window. Received: window={window!r} ({err})") from None
        if mode not in _MODES:
            raise ValueError(f"`mode` must be one of {', '.join(_MODES)}. Received: mode={mode!r}")
        if not isinstance(db_floor, (int, float)) or not db_floor < 0:
            raise ValueError(f"`db_floor` must be a negative number of dB. Received: db_floor={db_floor}")
        if num_mel_bins is not None and (not isinstance(num_mel_bins, int) or num_mel_bins <= 0):
            raise ValueError(f"`num_mel_bins` must be a positive integer or None. Received: num_mel_bins={num_mel_bins}")
        if not isinstance(sample_rate, (int, float)) or sample_rate <= 0:
            raise ValueError(f"`sample_rate` must be positive. Received: sample_rate={sample_rate}")
        super().__init__(**kwargs)
        self.frame_length = frame_length
        self.frame_step = frame_step
        self.fft_length = fft_length
        self._fft_length = fft_length or frame_length
        self.window = window
        self.center = bool(center)
        self.mode = mode
        self.db_floor = float(db_floor)
        self.num_mel_bins = num_mel_bins
        self.sample_rate = sample_rate
        self._mel = None
        self._window_array = None

    @property
    def num_bins(self) -> int:
        """Bins on the last output axis (``fft_length // 2 + 1`` or ``num_mel_bins``)."""
        return self.num_mel_bins or self._fft_length // 2 + 1

    @property
    def input_dtype(self):
        """float32 under a mixed policy: the STFT is computed in float32 (see "Mixed precision")."""
        return internal_dtype(self.compute_dtype)

    def build(self, input_shape):
        self._check_shape(input_shape)
        if self.window is not None and self.window not in _KERAS_WINDOWS:
            import scipy.signal

            self._window_array = scipy.signal.get_window(self.window, self.frame_length).astype("float32")
        if self.num_mel_bins:
            self._mel = mel_weight_matrix(num_mel_bins=self.num_mel_bins, fft_length=self._fft_length,
                                          sample_rate=self.sample_rate)
        self.built = True

    def _check_shape(self, shape):
        shape = tuple(shape)
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[-1] != 1):
            raise ValueError("Spectrogram expects input of shape (batch, samples) or (batch, samples, 1). "
                             f"Received: input shape={shape}")

    def call(self, inputs):
        self._check_shape(inputs.shape)
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        if "float" not in dtype:
            raise ValueError(f"Spectrogram expects a float waveform. Received: input dtype={dtype}")
        x = inputs
        if len(x.shape) == 3:
            x = ops.squeeze(x, axis=-1)
        if dtype not in ("float32", "float64"):
            x = ops.cast(x, "float32")
        window = self.window
        if self._window_array is not None:
            window = ops.convert_to_tensor(self._window_array, dtype=x.dtype)
        real, imag = ops.stft(x, self.frame_length, self.frame_step, self._fft_length,
                              window=window, center=self.center)
        power = ops.square(real) + ops.square(imag)
        if self.mode == "magnitude":
            out = ops.sqrt(ops.maximum(power, _POWER_FLOOR))
        else:
            out = power
        if self._mel is not None:
            out = ops.matmul(out, ops.convert_to_tensor(self._mel, dtype=out.dtype))
        if self.mode == "db":
            floor = 10.0 ** (self.db_floor / 10.0)
            out = 10.0 * ops.log(ops.maximum(out, floor)) / math.log(10.0)
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        samples = input_shape[1]
        frames = None
        if samples is not None:
            if self.center:
                frames = 1 + samples // self.frame_step
            else:
                frames = 1 + (samples - self._fft_length) // self.frame_step
        return (input_shape[0], frames, self.num_bins)

    def get_config(self):
        config = super().get_config()
        config.update({
            "frame_length": self.frame_length,
            "frame_step": self.frame_step,
            "fft_length": self.fft_length,
            "window": self.window,
            "center": self.center,
            "mode": self.mode,
            "db_floor": self.db_floor,
            "num_mel_bins": self.num_mel_bins,
            "sample_rate": self.sample_rate,
        })
        return config
