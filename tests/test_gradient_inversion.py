"""Gradient-based magnitude inversion on real rendered notes."""

from __future__ import annotations

import numpy as np
import pytest

from vqkeras.metrics import spectral_convergence_db, stft_magnitude
from vqkeras.phase import griffin_lim, invert_magnitude

FRAME, HOP = 1024, 256


@pytest.fixture(scope="session")
def magnitudes(notes) -> np.ndarray:
    return stft_magnitude(notes[:4], FRAME, HOP)


def _sc(target, wave):
    return spectral_convergence_db(target, stft_magnitude(wave, FRAME, HOP))


@pytest.mark.backend
def test_reaches_minus_20_db_and_beats_its_griffin_lim_start(magnitudes):
    wave = invert_magnitude(magnitudes, frame_length=FRAME, frame_step=HOP, n_iter=100)
    assert wave.shape == (4, 64000) and wave.dtype == np.float32
    sc = _sc(magnitudes, wave)
    assert np.all(sc < -20.0), sc
    start = griffin_lim(magnitudes, frame_length=FRAME, frame_step=HOP, n_iter=16)
    assert sc.mean() < _sc(magnitudes, start).mean() - 3.0


@pytest.mark.backend
def test_griffin_lim_start_beats_near_silence_start(magnitudes):
    kwargs = dict(frame_length=FRAME, frame_step=HOP, n_iter=30)
    from_gl = _sc(magnitudes[:2], invert_magnitude(magnitudes[:2], init="griffin_lim", **kwargs))
    from_zeros = _sc(magnitudes[:2], invert_magnitude(magnitudes[:2], init="zeros", **kwargs))
    assert np.all(from_gl < from_zeros - 3.0), (from_gl, from_zeros)


@pytest.mark.backend
def test_level_invariance_and_silence(magnitudes):
    """One learning rate works for quiet and loud clips; silence stays silent."""
    mag = magnitudes[:1]
    kwargs = dict(frame_length=FRAME, frame_step=HOP, n_iter=20, init="random")
    loud = invert_magnitude(mag, **kwargs)
    quiet = invert_magnitude(mag * 1e-3, **kwargs)
    np.testing.assert_allclose(_sc(mag * 1e-3, quiet), _sc(mag, loud), atol=0.1)
    np.testing.assert_allclose(quiet * 1e3, loud, atol=0.05 * np.abs(loud).max())
    silent = invert_magnitude(np.zeros((20, 513), "float32"), **kwargs)
    assert silent.shape == (19 * HOP,)
    assert np.all(np.isfinite(silent)) and np.abs(silent).max() < 1e-6


@pytest.mark.parametrize(
    ("magnitude", "kwargs", "match"),
    [
        (-np.ones((2, 10, 513), "float32"), {}, "non-negative"),
        (np.ones((2, 10, 513), "complex64"), {}, "complex"),
        (np.ones((513,), "float32"), {}, "shape"),
        (np.ones((1, 10, 513), "float32"), {"init": "noise"}, "init"),
        (np.ones((1, 10, 513), "float32"), {"learning_rate": 0.0}, "learning_rate"),
        (np.ones((1, 10, 513), "float32"), {"length": 100}, "length"),
    ],
)
def test_bad_input_raises_value_error(magnitude, kwargs, match):
    with pytest.raises(ValueError, match=match):
        invert_magnitude(magnitude, frame_length=FRAME, frame_step=HOP, **kwargs)
