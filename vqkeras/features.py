"""Waveforms <-> the models' "spectrogram images".

An image is ``(frames, bins - 1, 1)`` in [0, 1] (time first, like Keras):
the STFT magnitude divided by ``0.5 * sum(window)`` (so a full-scale sine
peaks at 0 dB), in dB, then mapped to [0, 1] by one of two scalings:

- ``"fixed"`` (default): clipped to ``[-dynamic_range_db, 0]`` and mapped
  linearly. The mapping is the same for every clip, so `image_to_magnitude`
  inverts it exactly inside the range: a decoder's output image turns back
  into a linear magnitude with no side information (what the codec needs).
- ``"per_clip"`` (the thesis): each clip's dB spectrogram is min-max scaled
  over its own range, at most ``dynamic_range_db`` below its peak (the thesis
  used 120 dB). Inverting it needs each clip's ``levels`` (its dB floor and
  peak), which `clip_levels` computes and `image_to_magnitude` takes.

The Nyquist bin is dropped and the frames are cropped to a multiple of the
encoder's time stride.

>>> cfg = SpectrogramConfig()
>>> waveform_to_image(np.zeros((2, cfg.num_samples), "float32"), cfg).shape
(2, 500, 256, 1)
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

#: Waveforms sent through the STFT at once (bounds peak memory).
_CHUNK = 64
#: The image scalings (see the module docstring).
SCALINGS = ("fixed", "per_clip")
#: Normalised magnitude floor before taking dB (-240 dB: below any real clip).
_MIN_MAGNITUDE = 1e-12


@dataclasses.dataclass(frozen=True)
class SpectrogramConfig:
    """STFT and dB-scaling parameters of the model's spectrogram images.

    Parameters
    ----------
    sample_rate : int
        Audio sample rate in Hz.
    frame_length : int
        STFT window and FFT size in samples (Hann window, ``center=True``).
    frame_step : int
        Hop between frames in samples.
    duration : float
        Clip length in seconds (NSynth notes: 4 s).
    dynamic_range_db : float
        ``"fixed"``: dB below full scale that map to image value 0.
        ``"per_clip"``: the widest range below each clip's peak that is kept.
    scaling : {"fixed", "per_clip"}
        Fixed, invertible dB mapping (default), or the thesis's per-clip
        min-max scaling.
    """

    sample_rate: int = 16000
    frame_length: int = 512
    frame_step: int = 128
    duration: float = 4.0
    dynamic_range_db: float = 100.0
    scaling: str = "fixed"

    def __post_init__(self):
        for name in ("sample_rate", "frame_length", "frame_step"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
        if self.frame_step > self.frame_length:
            raise ValueError(f"frame_step must not exceed frame_length. Received: "
                             f"frame_step={self.frame_step}, frame_length={self.frame_length}")
        if not self.duration > 0:
            raise ValueError(f"duration must be positive. Received: duration={self.duration}")
        if not self.dynamic_range_db > 0:
            raise ValueError(f"dynamic_range_db must be positive. Received: "
                             f"dynamic_range_db={self.dynamic_range_db}")
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {list(SCALINGS)}. Received: scaling={self.scaling!r}")

    @property
    def num_samples(self) -> int:
        """Samples per clip, ``round(duration * sample_rate)``."""
        return int(round(self.duration * self.sample_rate))

    @property
    def num_bins(self) -> int:
        """STFT bins, ``frame_length // 2 + 1`` (the image has one fewer)."""
        return self.frame_length // 2 + 1

    @property
    def num_frames(self) -> int:
        """STFT frames of a ``num_samples`` clip (``center=True``)."""
        return 1 + self.num_samples // self.frame_step

    @property
    def magnitude_scale(self) -> float:
        """``0.5 * sum(hann window)``: the STFT peak of a full-scale sine."""
        # scipy.signal.get_window("hann", n) (periodic) written out: importing
        # scipy.signal costs ~0.6 s of a command's start.
        n = self.frame_length
        return 0.5 * float(np.sum(0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)))

    def image_shape(self, *, time_multiple: int = 4, freq_multiple: int = 4) -> tuple[int, int, int]:
        """Shape ``(frames, bins, 1)`` of one clip's image."""
        return (_crop(self.num_frames, time_multiple), _crop(self.num_bins - 1, freq_multiple), 1)


def _crop(n: int, multiple: int) -> int:
    if not isinstance(multiple, (int, np.integer)) or multiple < 1:
        raise ValueError(f"multiples must be positive integers. Received: {multiple!r}")
    return n - n % multiple


def _to_numpy(x) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x))


@functools.lru_cache(maxsize=8)
def _spectrogram_fn(frame_length: int, frame_step: int):
    """The `Spectrogram` layer, as one compiled program on JAX.

    Called eagerly, Keras on JAX traces and lowers each op of the STFT on its
    own (~60 of them, ~1 s in every new process); one `jax.jit` program traces
    once and comes from the persistent compilation cache (`vqkeras.cache`).
    """
    import keras

    from vqkeras.layers.spectrogram import Spectrogram

    layer = Spectrogram(frame_length=frame_length, frame_step=frame_step, window="hann",
                        center=True, mode="magnitude")
    if keras.backend.backend() != "jax":
        return layer
    import jax

    return jax.jit(lambda waves: layer(waves))


def stft_magnitude(waves: np.ndarray, config: SpectrogramConfig) -> np.ndarray:
    """Linear STFT magnitude ``(batch, frames, bins)`` with vqkeras's `Spectrogram` layer."""
    waves = np.asarray(waves, dtype=np.float32)
    if waves.ndim == 1:
        waves = waves[None]
    if waves.ndim != 2:
        raise ValueError(f"waves must have shape (batch, samples). Received: shape={waves.shape}")
    layer = _spectrogram_fn(config.frame_length, config.frame_step)
    parts = []
    for i in range(0, waves.shape[0], _CHUNK):
        chunk = waves[i:i + _CHUNK]
        # Pad the batch to a multiple of 8: backends compile per input shape,
        # so ragged last chunks would each pay a fresh compilation.
        pad = -len(chunk) % 8
        padded = np.pad(chunk, ((0, pad), (0, 0))) if pad else chunk
        parts.append(_to_numpy(layer(padded))[:len(chunk)])
    return np.concatenate(parts, axis=0).astype(np.float32)


def _crop_magnitude(magnitude: np.ndarray, config: SpectrogramConfig, time_multiple: int,
                    freq_multiple: int) -> np.ndarray:
    magnitude = np.asarray(magnitude, dtype=np.float32)
    if magnitude.ndim != 3 or magnitude.shape[-1] != config.num_bins:
        raise ValueError(f"magnitude must have shape (batch, frames, {config.num_bins}). "
                         f"Received: shape={magnitude.shape}")
    frames = _crop(magnitude.shape[1], time_multiple)
    bins = _crop(config.num_bins - 1, freq_multiple)
    # Drop the Nyquist bin (and any bins past a multiple of the frequency stride).
    return magnitude[:, :frames, :bins] / config.magnitude_scale


def _to_db(normalised_magnitude: np.ndarray) -> np.ndarray:
    return 20.0 * np.log10(np.maximum(normalised_magnitude, _MIN_MAGNITUDE))


def clip_levels(
    magnitude: np.ndarray,
    config: SpectrogramConfig,
    *,
    time_multiple: int = 4,
    freq_multiple: int = 4,
) -> np.ndarray:
    """Each clip's dB floor and peak under ``scaling="per_clip"``.

    Parameters
    ----------
    magnitude : np.ndarray [shape=(batch, frames, bins)]
        Linear STFT magnitude, as for `magnitude_to_image`.
    config : SpectrogramConfig
    time_multiple, freq_multiple : int
        The same crop as `magnitude_to_image`: levels are taken over what the image holds.

    Returns
    -------
    np.ndarray [shape=(batch, 2), float32]
        ``(floor_db, peak_db)`` per clip: image 0 and image 1. The floor is the
        clip's quietest value, but at most ``dynamic_range_db`` below its peak.
    """
    db = _to_db(_crop_magnitude(magnitude, config, time_multiple, freq_multiple))
    flat = db.reshape(len(db), -1)
    peak = flat.max(axis=1) if flat.size else np.zeros(len(db))
    floor = np.maximum(flat.min(axis=1) if flat.size else peak, peak - config.dynamic_range_db)
    return np.stack([floor, peak], axis=1).astype(np.float32)


def magnitude_to_image(
    magnitude: np.ndarray,
    config: SpectrogramConfig,
    *,
    time_multiple: int = 4,
    freq_multiple: int = 4,
) -> np.ndarray:
    """Linear magnitude ``(batch, frames, bins)`` -> image ``(batch, frames', bins', 1)``.

    The inverse of `image_to_magnitude` inside the clip range (given the
    clip's `clip_levels` under ``scaling="per_clip"``).
    """
    db = _to_db(_crop_magnitude(magnitude, config, time_multiple, freq_multiple))
    if config.scaling == "per_clip":
        levels = clip_levels(magnitude, config, time_multiple=time_multiple, freq_multiple=freq_multiple)
        floor, peak = levels[:, 0, None, None], levels[:, 1, None, None]
        # A silent (constant) clip has no range: it maps to 0, not to a division by zero.
        image = (np.clip(db, floor, peak) - floor) / np.maximum(peak - floor, 1e-6)
    else:
        rng_db = config.dynamic_range_db
        image = (np.clip(db, -rng_db, 0.0) + rng_db) / rng_db
    return image[..., None].astype(np.float32)


def waveform_to_image(
    waves: np.ndarray,
    config: SpectrogramConfig,
    *,
    time_multiple: int = 4,
    freq_multiple: int = 4,
) -> np.ndarray:
    """Turn waveforms into the models' spectrogram images.

    Parameters
    ----------
    waves : np.ndarray [shape=(batch, samples) or (samples,), float]
        Audio in [-1, 1] at ``config.sample_rate``.
    config : SpectrogramConfig
    time_multiple : int
        Frames are cropped (at the end) to a multiple of this: the encoder's
        total time stride.
    freq_multiple : int
        Bins (after dropping Nyquist) are cropped to a multiple of this; with
        the default power-of-two frame lengths nothing is cropped.

    Returns
    -------
    np.ndarray [shape=(batch, frames, bins - 1, 1), float32, in [0, 1]]
        1.0 is a full-scale sine's peak (0 dB); 0.0 is ``-dynamic_range_db``
        or quieter.
    """
    return magnitude_to_image(stft_magnitude(waves, config), config,
                              time_multiple=time_multiple, freq_multiple=freq_multiple)


def image_to_magnitude(
    images: np.ndarray,
    config: SpectrogramConfig,
    *,
    num_frames: int | None = None,
    levels: np.ndarray | None = None,
) -> np.ndarray:
    """Invert `waveform_to_image`'s scaling: image -> linear STFT magnitude.

    Parameters
    ----------
    images : np.ndarray [shape=(batch, frames, bins') or (batch, frames, bins', 1)]
        Values are clipped to [0, 1] first (decoder outputs may overshoot).
    config : SpectrogramConfig
    num_frames : int or None
        Frames of the output; frames missing from the image (cropped by
        ``time_multiple``) are padded with silence (zero magnitude). Default:
        ``config.num_frames``, the frame count of a full clip.
    levels : np.ndarray [shape=(batch, 2)], optional
        Per-clip ``(floor_db, peak_db)`` from `clip_levels`; required (and
        only used) when ``config.scaling == "per_clip"``.

    Returns
    -------
    np.ndarray [shape=(batch, num_frames, config.num_bins), float32]
        Linear magnitude on the STFT's scale; Nyquist (and any cropped top
        bins) set to zero. Image value 0 gives the floor
        ``magnitude_scale * 10**(-dynamic_range_db / 20)`` (fixed scaling)
        or the clip's floor level (per-clip scaling), not zero.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:
        if images.shape[-1] != 1:
            raise ValueError(f"images must have one channel. Received: shape={images.shape}")
        images = images[..., 0]
    if images.ndim != 3 or images.shape[-1] > config.num_bins - 1:
        raise ValueError(f"images must have shape (batch, frames, <= {config.num_bins - 1}[, 1]). "
                         f"Received: shape={images.shape}")
    num_frames = config.num_frames if num_frames is None else int(num_frames)
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive. Received: num_frames={num_frames}")
    if config.scaling == "per_clip":
        if levels is None:
            raise ValueError("per-clip scaling: pass levels=clip_levels(...) of the original clips "
                             "(the image alone does not say how loud the clip was)")
        levels = np.asarray(levels, dtype=np.float32)
        if levels.shape != (images.shape[0], 2):
            raise ValueError(f"levels must have shape ({images.shape[0]}, 2). Received: shape={levels.shape}")
        floor, peak = levels[:, 0, None, None], levels[:, 1, None, None]
        db = floor + np.clip(images, 0.0, 1.0) * (peak - floor)
    else:
        rng_db = config.dynamic_range_db
        db = np.clip(images, 0.0, 1.0) * rng_db - rng_db
    mag = config.magnitude_scale * np.power(10.0, db / 20.0, dtype=np.float32)
    out = np.zeros((images.shape[0], num_frames, config.num_bins), dtype=np.float32)
    frames = min(num_frames, mag.shape[1])
    out[:, :frames, :mag.shape[2]] = mag[:, :frames]
    return out


def db_to_image_value(db: float, config: SpectrogramConfig) -> float:
    """Image value of a level given in dB relative to a full-scale sine (fixed scaling)."""
    return float(min(max((db + config.dynamic_range_db) / config.dynamic_range_db, 0.0), 1.0))


__all__ = ["SCALINGS", "SpectrogramConfig", "clip_levels", "waveform_to_image", "image_to_magnitude",
           "magnitude_to_image", "stft_magnitude", "db_to_image_value"]
