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


def _short_sound_in_silence(note: np.ndarray, sound_s: float = 0.25) -> np.ndarray:
    """The first ``sound_s`` of a real note, a 10-ms fade, then digital silence to 4 s."""
    out = np.zeros(64000)
    n = int(sound_s * 16000)
    out[:n] = note[:n] * np.minimum(1.0, np.arange(n)[::-1] / 160.0)
    return out


def test_slot_energies_give_the_meter_reading(notes):
    from vqkeras.codec.loudness import gated_loudness, k_filtered_energy

    for signal in [notes[0], notes[3] * 0.01, _short_sound_in_silence(notes[5]),
                   np.concatenate([notes[1][:6001], notes[2][:30000]])]:  # not a whole slot
        slots = k_filtered_energy(signal, 16000, 64)
        assert len(slots) == len(signal) // 64
        # The 48-kHz meter, within the 16-kHz filter's 0.13 dB.
        assert gated_loudness(slots, 64, 16000) == pytest.approx(
            integrated_loudness(signal, 16000), abs=0.1)
    with pytest.raises(ValueError, match="slots"):
        gated_loudness(np.ones(100), 96, 16000)


def test_matching_gain_follows_the_gates(notes):
    """A decoded version with a noise floor needs another gain than its energy ratio says."""
    from vqkeras.codec.loudness import gated_loudness, k_filtered_energy, matching_gain_db

    rng = np.random.default_rng(0)
    # A 100-ms hit with a 350-ms tail 10 dB down, then digital silence: the
    # meter reads two blocks. The "decoded" version is 6 dB quieter, lost
    # the tail and has a noise floor near -70 dBFS: the meter reads one block.
    sound = _short_sound_in_silence(notes[6], 0.45)
    sound[1600:] *= 10 ** (-10 / 20)
    decoded = 0.5 * sound + 3e-4 * rng.standard_normal(len(sound))
    decoded[1600:7200] *= 0.1
    ref, est = (k_filtered_energy(x, 16000, 64) for x in (sound, decoded))
    gain = matching_gain_db(ref, est, 64, 16000)
    assert integrated_loudness(decoded * 10 ** (gain / 20), 16000) == pytest.approx(
        integrated_loudness(sound, 16000), abs=0.05)
    # The plain energy ratio is off here: the gates read different blocks.
    ratio = 10 * np.log10(ref.sum() / est.sum())
    assert abs(ratio - gain) > 1.0, (ratio, gain)
    # A segment with nothing above the absolute gate is matched by energy.
    quiet = k_filtered_energy(sound * 1e-4, 16000, 64)
    assert gated_loudness(quiet, 64, 16000) == float("-inf")
    assert matching_gain_db(quiet, quiet * 4, 64, 16000) == pytest.approx(-6.02, abs=0.01)
    assert matching_gain_db(np.zeros(100), quiet, 64, 16000) == 0.0


def test_k_filter_designed_at_48k_gives_the_standards_tables():
    from vqkeras.codec.loudness import _HIGHPASS, _SHELF, k_filter_coefficients

    for ours, table in zip(k_filter_coefficients(48000), (_SHELF, _HIGHPASS)):
        for x, y in zip(ours, table):
            np.testing.assert_allclose(x, y, atol=1e-8)
    # At 16 kHz: about the 48-kHz response below 7 kHz (the bilinear transform
    # bends the shelf by up to 0.13 dB), and `k_weight_power` says what it is.
    from scipy.signal import freqz

    freqs = np.array([20.0, 40.0, 100.0, 1000.0, 2000.0, 4000.0, 7000.0])
    response = np.ones(len(freqs))
    for b, a in k_filter_coefficients(16000):
        response *= np.abs(freqz(b, a, worN=freqs, fs=16000)[1]) ** 2
    np.testing.assert_allclose(10 * np.log10(response), 10 * np.log10(k_weight_power(freqs)),
                               atol=0.15)
    np.testing.assert_allclose(response, k_weight_power(freqs, 16000), rtol=1e-9)
