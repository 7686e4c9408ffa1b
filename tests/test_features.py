"""Spectrogram images: scaling, shapes, librosa agreement and exact inversion."""

from __future__ import annotations

import numpy as np
import pytest

from vqkeras.features import (
    SpectrogramConfig,
    clip_levels,
    image_to_magnitude,
    magnitude_to_image,
    stft_magnitude,
    waveform_to_image,
)

pytestmark = pytest.mark.backend
CFG = SpectrogramConfig()


@pytest.fixture(scope="module")
def images(notes):
    return waveform_to_image(notes, CFG)


def test_config_properties_and_validation():
    assert (CFG.num_samples, CFG.num_bins, CFG.num_frames) == (64000, 257, 501)
    assert CFG.image_shape() == (500, 256, 1)
    assert CFG.magnitude_scale == pytest.approx(128.0)
    with pytest.raises(ValueError, match="frame_step"):
        SpectrogramConfig(frame_step=1024)
    with pytest.raises(ValueError, match="dynamic_range_db"):
        SpectrogramConfig(dynamic_range_db=0)
    with pytest.raises(Exception):
        CFG.frame_length = 1024  # frozen


def test_image_shape_range_and_content(images, backend):
    assert images.shape == (8, 500, 256, 1) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    # Real notes use a good part of the 100 dB range, and are not all floor.
    assert 0.5 < images.max() < 1.0 and np.mean(images > 0.2) > 0.1


def _numpy_stft_magnitude(x: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Reference: librosa.stft(center=True, pad_mode="reflect"), periodic Hann, in numpy."""
    x = np.pad(x, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[:, ::hop]
    return np.abs(np.fft.rfft(frames * window, axis=-1))


def test_matches_reference_stft(notes):
    ref = _numpy_stft_magnitude(notes[:2].astype(np.float64))
    np.testing.assert_allclose(stft_magnitude(notes[:2], CFG), ref, atol=1e-4, rtol=1e-4)
    db = np.clip(20 * np.log10(np.maximum(ref / 128.0, 1e-10)), -100, 0)
    np.testing.assert_allclose(waveform_to_image(notes[:2], CFG)[..., 0], ((db + 100) / 100)[:, :500, :256],
                               atol=1e-4)


@pytest.mark.parametrize("level_db", [0.0, -20.0, -60.0])
def test_sine_level_maps_to_image_value(level_db):
    t = np.arange(CFG.num_samples) / CFG.sample_rate
    freq = 1000.0  # exactly bin 32 of a 512-point FFT at 16 kHz
    sine = (10 ** (level_db / 20) * np.sin(2 * np.pi * freq * t)).astype("float32")
    image = waveform_to_image(sine, CFG)
    assert image[0, 10:-10, 32, 0].mean() == pytest.approx(1 + level_db / 100, abs=2e-3)


def test_round_trip_is_exact_inside_clip_range(images):
    magnitude = image_to_magnitude(images, CFG)
    assert magnitude.shape == (8, 501, 257)
    np.testing.assert_array_equal(magnitude[:, :, -1], 0)  # Nyquist
    np.testing.assert_array_equal(magnitude[:, 500:], 0)   # cropped frame -> silence
    again = magnitude_to_image(magnitude, CFG)
    np.testing.assert_allclose(again, images, atol=1e-5)


def test_magnitude_recovered_above_the_floor(notes, images):
    true = stft_magnitude(notes, CFG)[:, :500, :256]
    back = image_to_magnitude(images, CFG)[:, :500, :256]
    loud = true > 128.0 * 10 ** (-100 / 20)
    np.testing.assert_allclose(back[loud], true[loud], rtol=1e-3)
    assert np.all(back[~loud] <= 128.0 * 10 ** (-100 / 20) * 1.001)


def test_multiples_and_num_frames(notes):
    image = waveform_to_image(notes[:1], CFG, time_multiple=16, freq_multiple=8)
    assert image.shape == (1, 496, 256, 1)
    mag = image_to_magnitude(image[..., 0], CFG, num_frames=400)
    assert mag.shape == (1, 400, 257)
    with pytest.raises(ValueError, match="one channel"):
        image_to_magnitude(np.zeros((1, 10, 256, 2)), CFG)
    with pytest.raises(ValueError, match="waves"):
        waveform_to_image(np.zeros((1, 2, 3)), CFG)


def test_thesis_front_end_gives_512x512_images_scaled_per_clip(notes):
    # Thesis: frame 1024, hop 128, 512 frames x 512 bins (Nyquist dropped), dB
    # min-max scaled per clip over at most 120 dB.
    thesis = SpectrogramConfig(frame_length=1024, frame_step=128, duration=4.088,
                               dynamic_range_db=120.0, scaling="per_clip")
    quiet = notes[[0, 0, 0]] * np.array([[1.0], [0.1], [0.01]], dtype="float32")  # 0, -20, -40 dB
    quiet = np.pad(quiet, ((0, 0), (0, thesis.num_samples - quiet.shape[1])))  # 4 s -> 4.088 s
    magnitude = stft_magnitude(quiet, thesis)
    images = magnitude_to_image(magnitude, thesis)
    assert images.shape == (3, 512, 512, 1)
    for image in images:  # each clip spans [0, 1] whatever its level
        assert image.min() == 0.0 and image.max() == pytest.approx(1.0)
    # The level is gone from the image (per-clip scaling), so the three match...
    np.testing.assert_allclose(images[1], images[0], atol=0.01)  # float32 round-off near -120 dB
    # ...and lives in the levels, which invert the scaling.
    levels = clip_levels(magnitude, thesis)
    np.testing.assert_allclose(levels[:, 1] - levels[0, 1], [0.0, -20.0, -40.0], atol=0.01)
    assert (levels[:, 1] - levels[:, 0] <= 120.0 + 1e-4).all()
    back = image_to_magnitude(images, thesis, num_frames=magnitude.shape[1], levels=levels)
    inside = (magnitude[:, :512, :512] / thesis.magnitude_scale
              > 10 ** (levels[:, 1, None, None] / 20) * 10 ** (-119 / 20))
    np.testing.assert_allclose(back[:, :512, :512][inside], magnitude[:, :512, :512][inside], rtol=1e-3)
    with pytest.raises(ValueError, match="levels"):
        image_to_magnitude(images, thesis)


def test_scaling_must_be_known():
    with pytest.raises(ValueError, match="scaling"):
        SpectrogramConfig(scaling="minmax")
