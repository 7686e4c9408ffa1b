"""read_wav / write_wav on real notes and on every kind of bad file."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from vqkeras.audio_io import read_wav, write_wav
from vqkeras.errors import AudioFileError


@pytest.fixture
def note(notes) -> np.ndarray:
    return notes[2]


def test_round_trip_is_16_bit_exact(tmp_path, note):
    path = tmp_path / "note.wav"
    write_wav(path, note, 16000)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    back = read_wav(path, num_samples=64000)
    assert back.dtype == np.float32 and back.shape == (64000,)
    np.testing.assert_allclose(back, note, atol=1.0 / 32768 + 1e-7)
    assert [p.name for p in tmp_path.iterdir()] == ["note.wav"]  # no temp file left


def test_write_clips_and_rejects_nan(tmp_path):
    write_wav(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.5], "float32"), 16000)
    np.testing.assert_allclose(read_wav(tmp_path / "loud.wav"), [32767 / 32768, -1.0, 0.5], atol=1e-4)
    with pytest.raises(ValueError, match="NaN"):
        write_wav(tmp_path / "bad.wav", np.array([0.0, np.nan]), 16000)
    assert not (tmp_path / "bad.wav").exists()


def test_write_replaces_atomically(tmp_path, note):
    path = tmp_path / "x.wav"
    write_wav(path, note, 16000)
    write_wav(path, note[:1000], 16000)
    assert sf.info(str(path)).frames == 1000


def test_missing_empty_folder(tmp_path):
    with pytest.raises(AudioFileError, match="not found"):
        read_wav(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioFileError, match="empty"):
        read_wav(tmp_path / "empty.wav")
    with pytest.raises(AudioFileError, match="folder"):
        read_wav(tmp_path)


def test_truncated_and_non_audio(tmp_path, note):
    write_wav(tmp_path / "full.wav", note, 16000)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "header_only.wav").write_bytes(data[:30])
    with pytest.raises(AudioFileError, match="header_only.wav"):
        read_wav(tmp_path / "header_only.wav")
    (tmp_path / "no_data.wav").write_bytes(data[:44])
    with pytest.raises(AudioFileError, match="no_data.wav"):
        read_wav(tmp_path / "no_data.wav")
    (tmp_path / "text.wav").write_text("this is not audio at all, just text\n" * 20)
    with pytest.raises(AudioFileError, match="not a readable audio file"):
        read_wav(tmp_path / "text.wav")
    # Truncated in the middle of the data: the samples that are there are read.
    (tmp_path / "half.wav").write_bytes(data[: 44 + 2 * 1000])
    assert read_wav(tmp_path / "half.wav").shape == (1000,)


def test_nan_samples_rejected(tmp_path):
    sf.write(str(tmp_path / "nan.wav"), np.array([0.0, np.nan, 0.1], "float32"), 16000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="NaN"):
        read_wav(tmp_path / "nan.wav")


def test_wrong_rate_is_resampled_and_logged(tmp_path, caplog):
    t = np.arange(44100) / 44100
    sf.write(str(tmp_path / "a440.wav"), 0.5 * np.sin(2 * np.pi * 440 * t), 44100, subtype="PCM_16")
    with caplog.at_level(logging.INFO, logger="vqkeras.audio_io"):
        wave = read_wav(tmp_path / "a440.wav", sample_rate=16000)
    assert "resampling from 44100 Hz to 16000 Hz" in caplog.text
    assert wave.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(16000)))
    assert np.argmax(spectrum) == pytest.approx(440, abs=1)  # 1 Hz per bin
    assert np.max(np.abs(wave[1000:-1000])) == pytest.approx(0.5, abs=0.01)


def test_stereo_is_downmixed_and_logged(tmp_path, note, caplog):
    stereo = np.stack([note, 0.5 * note], axis=1)
    sf.write(str(tmp_path / "st.wav"), stereo, 16000, subtype="FLOAT")
    with caplog.at_level(logging.INFO, logger="vqkeras.audio_io"):
        mono = read_wav(tmp_path / "st.wav")
    assert "downmixing 2 channels" in caplog.text
    np.testing.assert_allclose(mono, 0.75 * note, atol=1e-6)
    assert read_wav(tmp_path / "st.wav", mono=False).shape == (64000, 2)


def test_pad_trim_strict(tmp_path, note):
    write_wav(tmp_path / "short.wav", note[:1000], 16000)
    padded = read_wav(tmp_path / "short.wav", num_samples=1500)
    assert padded.shape == (1500,) and np.all(padded[1000:] == 0)
    assert np.abs(padded[:1000] - note[:1000]).max() < 1e-4
    assert read_wav(tmp_path / "short.wav", num_samples=1500, pad_mode="wrap")[1000] == padded[0]
    assert read_wav(tmp_path / "short.wav", num_samples=300).shape == (300,)
    with pytest.raises(AudioFileError, match="1000 samples, expected 1500"):
        read_wav(tmp_path / "short.wav", num_samples=1500, length_policy="strict")
    with pytest.raises(ValueError, match="length_policy"):
        read_wav(tmp_path / "short.wav", length_policy="crop")
