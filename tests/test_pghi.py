"""Phase-gradient heuristic integration (PGHI): a phase from the magnitude alone."""

from __future__ import annotations

import numpy as np
import pytest

from vqkeras.metrics import spectral_convergence_db, stft_magnitude
from vqkeras.phase import griffin_lim, invert_magnitude
from vqkeras.phase.pghi import pghi_phase, window_lambda

FRAME, HOP, SR = 1024, 256, 16000


def _chirp_and_sine(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    chirp = 0.5 * np.sin(2 * np.pi * (200 * t + 0.5 * 1500 * t**2))  # 200 -> 1700 Hz
    sine = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1320 * t + 1.0)
    return np.stack([chirp, sine]).astype("float32")


def _istft(mag: np.ndarray, phase: np.ndarray, length: int) -> np.ndarray:
    import librosa

    spec = np.swapaxes(mag * np.exp(1j * phase), 1, 2)
    return librosa.istft(spec, hop_length=HOP, n_fft=FRAME, length=length)


def test_pghi_phase_is_far_better_than_random_phase():
    waves = _chirp_and_sine()
    mag = stft_magnitude(waves, FRAME, HOP)
    phase = pghi_phase(mag, frame_length=FRAME, frame_step=HOP)
    assert phase.shape == mag.shape and np.all(np.isfinite(phase))
    est = stft_magnitude(_istft(mag, phase, waves.shape[1]), FRAME, HOP)
    rand = np.random.default_rng(0).uniform(-np.pi, np.pi, mag.shape)
    est_rand = stft_magnitude(_istft(mag, rand, waves.shape[1]), FRAME, HOP)
    sc_pghi, sc_rand = spectral_convergence_db(mag, est), spectral_convergence_db(mag, est_rand)
    assert np.all(sc_pghi < sc_rand - 10.0), (sc_pghi, sc_rand)
    # Away from the signals' abrupt start and end (which no Gaussian model fits), PGHI
    # alone is within -30 dB of a consistent STFT (measured: about -40 dB).
    inner = spectral_convergence_db(mag[:, 8:-8], est[:, 8:-8])
    assert np.all(inner < -30.0), inner


def test_pghi_phase_advance_of_a_sine_is_its_frequency():
    """Along time, the phase at the peak bin advances by 2 pi f hop per frame (mod 2 pi)."""
    waves = _chirp_and_sine()[1:]
    mag = stft_magnitude(waves, FRAME, HOP)
    phase = pghi_phase(mag, frame_length=FRAME, frame_step=HOP)[0]
    k = int(round(440 * FRAME / SR))
    steps = np.angle(np.exp(1j * (phase[11:50, k] - phase[10:49, k])))
    expected = np.angle(np.exp(1j * 2 * np.pi * 440 / SR * HOP))
    np.testing.assert_allclose(np.angle(np.exp(1j * (steps - expected))), 0.0, atol=0.05)


def test_pghi_phase_of_a_batch_equals_each_item_alone(notes):
    """The batch is integrated on threads: each item's phase must be what it gets alone
    (where it is integrated: coefficients below the tolerance get random phase, drawn for
    the whole batch), wrapped to [-pi, pi) like np.angle."""
    mag = stft_magnitude(notes[:4], FRAME, HOP)
    together = pghi_phase(mag, frame_length=FRAME, frame_step=HOP)
    assert together.min() >= -np.pi and together.max() < np.pi
    for i in range(len(mag)):
        alone = pghi_phase(mag[i:i + 1], frame_length=FRAME, frame_step=HOP)[0]
        integrated = mag[i] > mag[i].max() * 1e-5  # tol_db=100
        np.testing.assert_array_equal(together[i][integrated], alone[integrated])


def test_window_lambda():
    assert window_lambda("hann", 1024) == pytest.approx(0.25645 * 1024**2)
    assert window_lambda(("gaussian", 100.0), 1024) == pytest.approx(2 * np.pi * 100.0**2)
    from scipy.signal import get_window

    # Fitted from an array: a Gaussian array gives its own lam back.
    g = get_window(("gaussian", 80.0), 1024, fftbins=True)
    assert window_lambda(g, 1024) == pytest.approx(2 * np.pi * 80.0**2, rel=0.02)
    with pytest.raises(ValueError, match="shape"):
        pghi_phase(np.ones((10, 513)), frame_length=FRAME, frame_step=HOP)


@pytest.mark.backend
def test_griffin_lim_and_invert_magnitude_from_pghi(notes):
    mag = stft_magnitude(notes[:2], FRAME, HOP)
    kw = dict(frame_length=FRAME, frame_step=HOP)
    only = griffin_lim(mag, n_iter=0, init="pghi", **kw)
    assert only.shape == (2, (mag.shape[1] - 1) * HOP)
    sc_only = spectral_convergence_db(mag, stft_magnitude(only, FRAME, HOP))
    sc_random = spectral_convergence_db(mag, stft_magnitude(griffin_lim(mag, n_iter=0, **kw), FRAME, HOP))
    assert np.all(sc_only < sc_random - 8.0), (sc_only, sc_random)
    # The default start (PGHI) beats the old one (16 Griffin-Lim iterations) at equal Adam steps.
    new = invert_magnitude(mag, n_iter=30, **kw)
    old = invert_magnitude(mag, n_iter=30, init="griffin_lim", **kw)
    sc_new = spectral_convergence_db(mag, stft_magnitude(new, FRAME, HOP)).mean()
    sc_old = spectral_convergence_db(mag, stft_magnitude(old, FRAME, HOP)).mean()
    assert sc_new < sc_old - 2.0, (sc_new, sc_old)
    with pytest.raises(ValueError, match="init_iter"):
        invert_magnitude(mag, n_iter=1, init_iter=-1, **kw)
