"""vqkeras.metrics: known values, shapes and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from vqkeras.metrics import (
    log_spectral_distance,
    snr_db,
    spectral_convergence_db,
    spectrogram_mse,
    spectrogram_sse,
    stft_magnitude,
)


def test_spectral_convergence_known_values():
    target = np.ones((2, 5, 4))
    estimate = np.stack([0.9 * np.ones((5, 4)), np.zeros((5, 4))])
    sc = spectral_convergence_db(target, estimate)
    assert sc.shape == (2,)
    np.testing.assert_allclose(sc, [-20.0, 0.0], atol=1e-9)
    # One unbatched item gives a float; a perfect estimate gives -inf.
    assert spectral_convergence_db(target[0], estimate[0]) == pytest.approx(-20.0)
    assert spectral_convergence_db(target[0], target[0]) == -np.inf


def test_spectral_convergence_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        spectral_convergence_db(np.ones((2, 5, 4)), np.ones((2, 5, 3)))


def test_stft_magnitude_matches_keras_stft(notes):
    import keras

    wave = notes[:2, :8000]
    ours = stft_magnitude(wave, 512, 128)
    re, im = keras.ops.stft(wave, 512, 128, 512, window="hann", center=True)
    ref = np.sqrt(keras.ops.convert_to_numpy(re) ** 2 + keras.ops.convert_to_numpy(im) ** 2)
    assert ours.shape == (2, 8000 // 128 + 1, 257)
    np.testing.assert_allclose(ours, ref, atol=1e-4 * ref.max())


def test_snr_known_values():
    ref = np.array([[1.0, 0.0], [3.0, 4.0]])
    est = np.array([[1.0, 0.1], [3.0, 4.0]])
    snr = snr_db(ref, est)
    assert snr[0] == pytest.approx(20.0)
    assert snr[1] == np.inf
    assert snr_db(ref[0], -ref[0]) == pytest.approx(10 * np.log10(1 / 4))


def test_log_spectral_distance_of_a_gain_is_the_gain_in_db(rng):
    ref = rng.standard_normal(16000).astype("float32") * 0.1
    assert log_spectral_distance(ref, ref) == pytest.approx(0.0, abs=1e-9)
    # Halving the amplitude lowers every (unfloored) power bin by 6.02 dB.
    assert log_spectral_distance(ref, 0.5 * ref) == pytest.approx(20 * np.log10(2), abs=0.01)
    batch = log_spectral_distance(np.stack([ref, ref]), np.stack([ref, 0.5 * ref]))
    np.testing.assert_allclose(batch, [0.0, 20 * np.log10(2)], atol=0.01)


def test_log_spectral_distance_floor_bounds_silence(notes):
    ref = notes[0]
    # A silent estimate sits at the floor: the distance is at most floor_db.
    lsd = log_spectral_distance(ref, np.zeros_like(ref), floor_db=80.0)
    assert 0.0 < lsd <= 80.0
    assert log_spectral_distance(ref, np.zeros_like(ref), floor_db=40.0) < lsd


def test_spectrogram_sse_and_mse():
    a = np.zeros((2, 3, 4))
    b = np.stack([np.ones((3, 4)), 2 * np.ones((3, 4))])
    np.testing.assert_allclose(spectrogram_sse(a, b), [12.0, 48.0])
    np.testing.assert_allclose(spectrogram_mse(a, b), [1.0, 4.0])
    with pytest.raises(ValueError, match="same shape"):
        spectrogram_sse(a, b[:, :2])
