"""AudioReconstructionCallback: WAV files and the spectral-convergence log during fit."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from vqkeras.metrics import stft_magnitude

FRAME, HOP = 512, 128


def _near_identity_model(frames: int, bins: int):
    import keras

    inputs = keras.Input((frames, bins))
    outputs = keras.layers.Dense(bins, kernel_initializer="identity", activation="relu")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(1e-6), loss="mse")
    return model


@pytest.mark.backend
def test_callback_writes_audio_and_logs_convergence(notes, tmp_path):
    from vqkeras.phase import AudioReconstructionCallback

    mags = stft_magnitude(notes[:3, :16000], FRAME, HOP)  # (3, 126, 257)
    model = _near_identity_model(*mags.shape[1:])
    callback = AudioReconstructionCallback(mags, tmp_path / "audio", every_n_epochs=2,
                                           frame_length=FRAME, frame_step=HOP, n_iter=8,
                                           init_iter=8, max_items=2)
    history = model.fit(mags, mags, epochs=2, batch_size=3, verbose=0, callbacks=[callback])

    written = sorted(p.name for p in (tmp_path / "audio").iterdir())
    # Only epoch 2 (every_n_epochs=2), only max_items clips, no temp files left behind.
    assert written == ["epoch_002_item_0.wav", "epoch_002_item_1.wav"]
    audio, rate = sf.read(tmp_path / "audio" / "epoch_002_item_0.wav")
    assert rate == 16000 and audio.shape == (125 * HOP,)
    assert np.abs(audio).max() > 1e-3
    # The model is ~identity, so the recovered audio matches the targets' spectrograms.
    sc = history.history["val_spectral_convergence_db"]
    assert len(sc) == 1 and sc[0] < -10.0


def test_callback_rejects_bad_arguments(tmp_path):
    from vqkeras.phase import AudioReconstructionCallback

    mags = np.ones((1, 10, 257), "float32")
    with pytest.raises(ValueError, match="every_n_epochs"):
        AudioReconstructionCallback(mags, tmp_path, every_n_epochs=0)
    with pytest.raises(ValueError, match="max_items"):
        AudioReconstructionCallback(mags, tmp_path, max_items=0)
