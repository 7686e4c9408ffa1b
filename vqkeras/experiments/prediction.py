"""Reconstruct a sound file through a trained model (spectrogram in, audio out).

The input is cut into clip-length windows (the experiment's
``spectrogram.duration``, 4 s for NSynth), the last one padded with silence;
each window goes waveform -> image -> model -> magnitude -> `invert_magnitude`,
and the windows are concatenated and trimmed to the input's length. Windows
are reconstructed independently, so a long file can have small clicks at the
window boundaries.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vqkeras.experiments.config import ExperimentConfig, load_config
from vqkeras.errors import ConfigError, ModelFileError

__all__ = ["predict", "resolve_model"]

log = logging.getLogger(__name__)


def resolve_model(model: str | Path) -> tuple[ExperimentConfig, Path]:
    """Config and ``.keras`` path of a run folder or of a ``.keras`` file.

    A ``.keras`` file's config is the ``config.yaml`` next to it (or one
    folder up, for ``checkpoints/epoch-*.keras``).
    """
    path = Path(model)
    if path.is_dir():
        model_path = path / "model.keras"
        config_candidates = [path / "config.yaml"]
    elif path.is_file():
        model_path = path
        config_candidates = [path.parent / "config.yaml", path.parent.parent / "config.yaml"]
    else:
        raise FileNotFoundError(f"{path}: no such model file or run folder")
    if not model_path.is_file():
        raise FileNotFoundError(f"{path}: the run folder has no trained model (model.keras)")
    for candidate in config_candidates:
        if candidate.is_file():
            return load_config(candidate), model_path
    raise ConfigError(f"{path}: no config.yaml next to the model; it holds the spectrogram "
                      f"parameters the model was trained with")


def predict(input_wav: str | Path, output_wav: str | Path, *, model: str | Path,
            iterations: int | None = None, batch_size: int = 8) -> Path:
    """Send a WAV file through a trained model and write the reconstruction.

    Parameters
    ----------
    input_wav : str or Path
        Any length; resampled to the model's rate and mixed to mono.
    output_wav : str or Path
        Written atomically (temp file + rename), same length as the input, in
        the format its suffix names (see `vqkeras.audio_io.write_wav`); it may
        not be the input file.
    model : str or Path
        A run folder (``runs/<experiment>/<run>``) or a ``.keras`` file with
        the run's ``config.yaml`` beside it.
    iterations : int, optional
        Phase reconstruction iterations (default: the experiment's
        ``phase_reconstruction.n_iter``).
    batch_size : int
        Windows sent through the model and the phase reconstruction at once.

    Returns
    -------
    Path
        ``output_wav``.

    Raises
    ------
    AudioFileError
        The input cannot be read or is empty.
    ConfigError
        The model was not trained on spectrograms.
    """
    from vqkeras.audio_io import check_input_file, output_format, read_wav, write_wav
    from vqkeras.features import clip_levels, image_to_magnitude, magnitude_to_image, stft_magnitude
    from vqkeras.experiments.models import load_model
    from vqkeras.files import check_output_path
    from vqkeras.phase import invert_magnitude

    # Cheap checks first: a bad output path fails before the model loads.
    input_wav = check_input_file(input_wav)
    output_wav = check_output_path(output_wav, [input_wav])
    output_format(output_wav)
    config, model_path = resolve_model(model)
    if not config.dataset.is_audio:
        raise ConfigError(f"{model}: the model was trained on {config.dataset.name} images, "
                          f"not on audio spectrograms")
    if iterations is not None and int(iterations) < 0:
        raise ValueError(f"iterations must be >= 0. Received: iterations={iterations}")
    spec = config.spectrogram_config()
    wave = read_wav(input_wav, sample_rate=spec.sample_rate)
    num = len(wave)
    clip = spec.num_samples
    windows = -(-num // clip)
    padded = np.zeros(windows * clip, dtype="float32")
    padded[:num] = wave
    chunks = padded.reshape(windows, clip)
    try:
        net = load_model(model_path)
    except Exception as err:  # Keras raises ValueError/OSError/BadZipFile for a torn file
        raise ModelFileError(f"{model_path}: does not load (truncated or not a Keras file?): "
                             f"{type(err).__name__}: {' '.join(str(err).split())[:200]}") from err
    phase = config.phase_reconstruction
    n_iter = phase.n_iter if iterations is None else int(iterations)
    out = []
    for start in range(0, windows, batch_size):
        part = chunks[start:start + batch_size]
        crop = dict(time_multiple=config.model.time_stride, freq_multiple=config.model.freq_stride)
        source = stft_magnitude(part, spec)
        images = magnitude_to_image(source, spec, **crop)
        # Per-clip scaling (thesis front end): each window's own dB range undoes it.
        levels = clip_levels(source, spec, **crop) if spec.scaling == "per_clip" else None
        recon = np.asarray(net.predict(images, batch_size=batch_size, verbose=0))
        magnitude = image_to_magnitude(recon, spec, num_frames=spec.num_frames, levels=levels)
        out.append(np.asarray(invert_magnitude(
            magnitude, frame_length=spec.frame_length, frame_step=spec.frame_step, n_iter=n_iter,
            learning_rate=phase.learning_rate, init=phase.init, init_iter=phase.init_iter,
            length=clip, seed=config.seed), dtype="float32"))
    audio = np.concatenate(out, axis=0).reshape(-1)[:num]
    audio = np.clip(audio, -1.0, 1.0)  # phase reconstruction can overshoot full scale slightly
    write_wav(output_wav, audio, spec.sample_rate, inputs=(input_wav,))
    log.info("%s -> %s (%d windows of %.2f s, %d iterations)", input_wav, output_wav, windows,
             spec.duration, n_iter)
    return output_wav
