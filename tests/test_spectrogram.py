"""Spectrogram layer: parity with librosa on real notes, modes, mel, errors."""

from __future__ import annotations

import numpy as np
import pytest

from tests.layer_testing import run_layer_test

pytestmark = pytest.mark.backend


def _librosa_mag(y, n_fft, hop, win_length, window="hann", center=True):
    import librosa

    return np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win_length, window=window,
                               center=center, pad_mode="reflect")).transpose(0, 2, 1)


@pytest.mark.parametrize(
    "frame_length, frame_step, fft_length, window, center",
    [(1024, 256, None, "hann", True), (512, 128, None, "hann", True),
     (400, 160, 512, "hamming", True), (512, 128, None, "blackman", False)],
)
def test_magnitude_matches_librosa(notes, frame_length, frame_step, fft_length, window, center):
    from vqkeras.layers import Spectrogram

    y = notes[:3, :16000]
    layer = Spectrogram(frame_length=frame_length, frame_step=frame_step, fft_length=fft_length,
                        window=window, center=center)
    out = np.asarray(layer(y))
    ref = _librosa_mag(y, fft_length or frame_length, frame_step, frame_length, window, center)
    assert out.shape == ref.shape == layer.compute_output_shape(y.shape)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * ref.max())


def test_power_and_db_are_consistent_with_magnitude(notes):
    from vqkeras.layers import Spectrogram

    y = notes[:2, :8000].copy()
    y[1, 2000:6000] = 0.0  # a silent stretch must hit the dB floor exactly
    kw = dict(frame_length=512, frame_step=128)
    mag = np.asarray(Spectrogram(**kw)(y))
    power = np.asarray(Spectrogram(mode="power", **kw)(y))
    db = np.asarray(Spectrogram(mode="db", db_floor=-60.0, **kw)(y))
    np.testing.assert_allclose(power, mag**2, rtol=1e-5, atol=1e-6 * power.max())
    expected_db = 20 * np.log10(np.maximum(mag, 10 ** (-60 / 20)))
    np.testing.assert_allclose(db, expected_db, atol=1e-3)
    assert db.min() == pytest.approx(-60.0, abs=1e-4)
    assert (db[1, 25:40] == db.min()).all()  # frames wholly inside the silence


def test_mel_matches_librosa(notes):
    import librosa

    from vqkeras.layers import Spectrogram

    y = notes[:2, :16000]
    out = np.asarray(Spectrogram(frame_length=1024, frame_step=256, mode="power", num_mel_bins=64,
                                 sample_rate=16000)(y))
    ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=1024, hop_length=256, n_mels=64,
                                         pad_mode="reflect").transpose(0, 2, 1)
    assert out.shape == (2, 63, 64)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * ref.max())
    db = np.asarray(Spectrogram(frame_length=1024, frame_step=256, mode="db", num_mel_bins=64)(y))
    np.testing.assert_allclose(db, librosa.power_to_db(ref, ref=1.0, amin=1e-8, top_db=None), atol=2e-3)


def test_mel_weight_matrix_matches_librosa():
    import librosa

    from vqkeras.layers.spectrogram import mel_weight_matrix

    ours = mel_weight_matrix(num_mel_bins=40, fft_length=512, sample_rate=22050)
    np.testing.assert_allclose(ours, librosa.filters.mel(sr=22050, n_fft=512, n_mels=40).T, atol=1e-7)


def test_channel_axis_and_layer_contract(notes, tmp_path):
    from vqkeras.layers import Spectrogram

    y = notes[:2, :4096]
    layer = run_layer_test(Spectrogram, dict(frame_length=256, frame_step=64, mode="db"), y[..., None],
                           expected_output_shape=(2, 65, 129), tmp_path=tmp_path,
                           expected_num_trainable_weights=0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(layer(y[..., None])), np.asarray(layer(y)), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(frame_length=0), "frame_length=0"), (dict(frame_length=256, frame_step=512), "frame_step=512"),
     (dict(frame_length=512, fft_length=256), "fft_length=256"), (dict(window="nope"), "window='nope'"),
     (dict(mode="log"), "mode='log'"), (dict(db_floor=10.0), "db_floor=10.0"),
     (dict(num_mel_bins=0), "num_mel_bins=0")],
)
def test_bad_arguments_name_the_value(kwargs, match):
    from vqkeras.layers import Spectrogram

    with pytest.raises(ValueError, match=match):
        Spectrogram(**kwargs)


def test_bad_inputs_give_clear_errors():
    from vqkeras.layers import Spectrogram

    layer = Spectrogram(frame_length=256, frame_step=64)
    with pytest.raises(ValueError, match=r"\(batch, samples\).*shape=\(4000,\)"):
        layer(np.zeros(4000, "float32"))
    with pytest.raises(ValueError, match=r"shape=\(2, 4000, 2\)"):
        layer(np.zeros((2, 4000, 2), "float32"))
    with pytest.raises(ValueError, match="float waveform.*int32"):
        layer(np.zeros((2, 4000), "int32"))
