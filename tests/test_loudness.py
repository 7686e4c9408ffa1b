"""BS.1770 loudness (vqkeras.codec.loudness) against pyloudnorm, on real notes and tones."""

from __future__ import annotations

import numpy as np
import pytest

from vqkeras.codec.loudness import integrated_loudness, k_weight_power


def test_integrated_loudness_matches_pyloudnorm(notes):
    import pyloudnorm

    meter = pyloudnorm.Meter(16000)
    for note in notes:
        ours = integrated_loudness(note, 16000)
        ref = meter.integrated_loudness(note.astype(np.float64))
        assert ours == pytest.approx(ref, abs=0.1)
    # Stereo at 44.1 kHz: channels add (weights 1), a 1-kHz full-scale sine is about -3 LUFS.
    t = np.arange(44100 * 3) / 44100
    sine = np.sin(2 * np.pi * 1000 * t)
    stereo = np.stack([sine, 0.5 * sine], axis=1)
    ref = pyloudnorm.Meter(44100).integrated_loudness(stereo)
    assert integrated_loudness(stereo, 44100) == pytest.approx(ref, abs=0.1)
    assert integrated_loudness(sine, 44100) == pytest.approx(-3.01, abs=0.1)
    assert integrated_loudness(np.zeros(16000), 16000) == float("-inf")


def test_k_weighting_shape():
    db = 10 * np.log10(k_weight_power(np.array([20.0, 100.0, 1000.0, 4000.0, 8000.0])))
    assert db[0] < -10  # the high-pass removes rumble
    assert abs(db[2]) < 1.0  # about flat at 1 kHz
    assert 3.0 < db[3] < 4.5 and 3.0 < db[4] < 4.5  # the +4 dB high shelf
