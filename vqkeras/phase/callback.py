"""Keras callback that listens to the model during training: spectrogram -> audio."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np


class AudioReconstructionCallback(keras.callbacks.Callback):
    """Every few epochs, turn the model's output on a fixed batch into WAV files.

    The model is run on `validation_inputs`; `to_magnitude` maps its output to
    a linear STFT magnitude `(batch, frames, bins)`, which `invert_magnitude`
    turns into audio (a few iterations). Each clip is written, atomically, to
    ``out_dir/epoch_XXX_item_Y.wav``, and the spectral convergence (dB, mean
    over items) between the target magnitude and the STFT of the recovered
    audio is added to the epoch logs as ``val_spectral_convergence_db``.

    Args:
        validation_inputs: A fixed batch fed to the model, e.g. spectrogram
            images `(batch, frames, bins - 1, 1)` or magnitudes.
        out_dir: Folder for the WAV files (created if needed).
        every_n_epochs: Run after epochs `every_n_epochs`, `2 * every_n_epochs`, ...
        to_magnitude: Maps a (numpy) model output or input to linear magnitude;
            default identity. For models on `vqkeras.features` images use e.g.
            ``lambda x: image_to_magnitude(x, config)``.
        target_magnitude: The magnitude the audio should match; defaults to
            ``to_magnitude(validation_inputs)`` (autoencoders).
        frame_length: STFT window length of the magnitudes, in samples.
        frame_step: STFT hop, in samples.
        sample_rate: Sample rate of the written WAV files.
        n_iter: Adam steps of `invert_magnitude`.
        init_iter: Griffin-Lim iterations that start it.
        max_items: Write at most this many clips of the batch.
    """

    def __init__(self, validation_inputs: Any, out_dir: str | os.PathLike, *,
                 every_n_epochs: int = 5, to_magnitude: Callable[[np.ndarray], Any] | None = None,
                 target_magnitude: Any = None, frame_length: int = 1024, frame_step: int = 256,
                 sample_rate: int = 16000, n_iter: int = 32, init_iter: int = 16,
                 max_items: int = 4):
        super().__init__()
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"`every_n_epochs` must be a positive int. "
                             f"Received: every_n_epochs={every_n_epochs}")
        if not isinstance(max_items, int) or max_items < 1:
            raise ValueError(f"`max_items` must be a positive int. Received: max_items={max_items}")
        self.validation_inputs = validation_inputs
        self.out_dir = Path(out_dir)
        self.every_n_epochs = every_n_epochs
        self.to_magnitude = to_magnitude or (lambda x: x)
        self.frame_length, self.frame_step = int(frame_length), int(frame_step)
        self.sample_rate, self.n_iter, self.init_iter = int(sample_rate), int(n_iter), int(init_iter)
        self.max_items = max_items
        if target_magnitude is None:
            target_magnitude = self.to_magnitude(_to_numpy(validation_inputs))
        self.target_magnitude = np.asarray(_to_numpy(target_magnitude), dtype="float32")[:max_items]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every_n_epochs:
            return
        from vqkeras.audio_io import write_wav
        from vqkeras.metrics import spectral_convergence_db, stft_magnitude
        from vqkeras.phase.gradient_inversion import invert_magnitude

        output = self.model(self.validation_inputs, training=False)
        if isinstance(output, list | tuple):  # e.g. (reconstruction, extra outputs)
            output = output[0]
        magnitude = np.asarray(self.to_magnitude(_to_numpy(output)), dtype="float32")
        # Decoders with a linear last layer can dip below zero; magnitude cannot.
        magnitude = np.maximum(magnitude[: self.max_items], 0.0)
        audio = invert_magnitude(magnitude, frame_length=self.frame_length,
                                 frame_step=self.frame_step, n_iter=self.n_iter,
                                 init_iter=self.init_iter)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for i, clip in enumerate(audio):
            write_wav(self.out_dir / f"epoch_{epoch + 1:03d}_item_{i}.wav", clip, self.sample_rate)
        fft_length = 2 * (self.target_magnitude.shape[-1] - 1)
        recovered = stft_magnitude(audio, self.frame_length, self.frame_step, fft_length)
        frames = min(recovered.shape[1], self.target_magnitude.shape[1])
        sc = spectral_convergence_db(self.target_magnitude[:, :frames], recovered[:, :frames])
        if logs is not None:
            logs["val_spectral_convergence_db"] = float(np.mean(sc))


def _to_numpy(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else keras.ops.convert_to_numpy(x)
