"""predict(): a WAV of any length through a trained model and phase reconstruction."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from vqkeras.errors import AudioFileError, ConfigError
from vqkeras.experiments.prediction import predict, resolve_model


@pytest.mark.backend
def test_predict_keeps_length_and_rate(tiny_run, notes, tmp_path):
    config, run_dir = tiny_run
    # 2.3 of the model's 1-s windows: predict pads the last window and trims the output.
    audio = notes[0][:36800]
    source = tmp_path / "in.wav"
    sf.write(source, audio, 16000)
    out = predict(source, tmp_path / "out.wav", model=run_dir, iterations=4)
    assert out == tmp_path / "out.wav"
    info = sf.info(out)
    assert info.samplerate == 16000 and info.frames == 36800 and info.channels == 1
    result, _ = sf.read(out, dtype="float32")
    assert np.isfinite(result).all() and np.abs(result).max() <= 1.0
    # Not silence: the note's energy comes back (roughly; the phase is new).
    ratio = np.sqrt(np.mean(result**2) / np.mean(audio**2))
    assert 0.1 < ratio < 10.0
    assert not list(tmp_path.glob(".*"))  # the atomic write left no temp file


def test_predict_from_a_keras_file_and_errors(tiny_run, notes, tmp_path):
    config, run_dir = tiny_run
    source = tmp_path / "in.wav"
    sf.write(source, notes[1][:8000], 16000)
    # A checkpoint finds config.yaml one folder up.
    checkpoint = sorted((run_dir / "checkpoints").glob("*.keras"))[-1]
    cfg, path = resolve_model(checkpoint)
    assert cfg == config and path == checkpoint
    out = predict(source, tmp_path / "ckpt.wav", model=checkpoint, iterations=0)
    assert sf.info(out).frames == 8000
    lonely = tmp_path / "lonely" / "model.keras"
    lonely.parent.mkdir()
    shutil.copy(run_dir / "model.keras", lonely)
    with pytest.raises(ConfigError, match="no config.yaml"):
        predict(source, tmp_path / "x.wav", model=lonely)
    with pytest.raises(FileNotFoundError, match="no such model"):
        predict(source, tmp_path / "x.wav", model=tmp_path / "missing")
    with pytest.raises(AudioFileError):
        predict(tmp_path / "missing.wav", tmp_path / "x.wav", model=run_dir)
    assert not (tmp_path / "x.wav").exists()
