"""Train the codec model shipped in ``vqkeras/assets``.

`train_default_model` reads ``experiments/codec-default.yaml`` (a residual-VQ
VQ-VAE with a coarse 31 x 16 code grid per 4-s window), trains it on the
rendered notes with a plain ``model.fit`` (peak-normalised clips, exactly as
the codec normalises its windows), then measures what the codec needs:

- per-stage code counts on the training clips (add-one smoothed: the entropy
  coder's probability tables);
- the average coded bitrate for each stage count on held-out clips (what
  ``--bitrate`` chooses from);

and writes a bundle (``codec.keras`` + ``codec.json``) with the SHA-256 of
the weights as the model's identity.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from vqkeras.codec import container, entropy
from vqkeras.codec.codec_model import CodecInfo, default_model_dir, save_codec_model, weights_sha256
from vqkeras.errors import DatasetError

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "codec-default.yaml"


def _load_split(root: Path, split: str, limit: int | None, num_samples: int,
                sample_rate: int, seed: int) -> np.ndarray:
    """Peak-normalised clips of one split, ``(n, num_samples)`` float32."""
    from vqkeras.audio_io import read_wav

    files = sorted((root / f"nsynth-{split}" / "audio").glob("*.wav"))
    if not files:
        raise DatasetError(f"no WAV files in {root / f'nsynth-{split}' / 'audio'}; render the "
                           f"dataset first: vqkeras data render --out {root}")
    if limit is not None and len(files) > limit:
        pick = np.random.default_rng(seed).choice(len(files), size=limit, replace=False)
        files = [files[i] for i in sorted(pick)]
    waves = np.stack([read_wav(f, sample_rate=sample_rate, num_samples=num_samples) for f in files])
    peaks = np.max(np.abs(waves), axis=1, keepdims=True)
    return (waves / np.maximum(peaks, 1e-6)).astype(np.float32)


def measure_bitrates(model, images: np.ndarray, counts: np.ndarray, window_seconds: float
                     ) -> dict[str, float]:
    """Average coded kbit/s per stage count: payload + one gain byte per window.

    The container's fixed header and checksum (56 bytes per file) are left
    out: they do not grow with the duration.
    """
    codes = model.encode(images)
    rates = {}
    for stages in range(1, codes.shape[-1] + 1):
        bits = [8 * len(entropy.encode_indices(c[None, ..., :stages], counts)) + 8 for c in codes]
        rates[str(stages)] = round(float(np.mean(bits)) / window_seconds / 1000.0, 4)
    return rates


def train_default_model(data_dir: str | os.PathLike = "data/nsynth-rendered",
                        out_dir: str | os.PathLike | None = None, *,
                        config: str | os.PathLike | None = None,
                        epochs: int | None = None, max_train: int | None = None) -> Path:
    """Train the shipped codec model and write its bundle.

    Parameters
    ----------
    data_dir : str or PathLike
        NSynth-layout dataset (``vqkeras data render --out DIR``); rendered
        here with the default soundfont if it does not exist.
    out_dir : str or PathLike, optional
        Bundle folder (default: ``vqkeras/assets``).
    config : str or PathLike, optional
        Experiment YAML (default: ``experiments/codec-default.yaml``).
    epochs, max_train : int, optional
        Override the YAML (quick runs and tests).

    Returns
    -------
    Path
        The bundle folder.
    """
    import keras

    from vqkeras.experiments.config import input_shape, load_config
    from vqkeras.features import waveform_to_image
    from vqkeras.experiments.models import build_model, compile_model

    cfg = load_config(config or DEFAULT_CONFIG)
    data_dir = Path(data_dir)
    if not (data_dir / "nsynth-train").is_dir():
        from vqkeras.data.render import render_dataset

        log.info("rendering the training notes into %s", data_dir)
        render_dataset(data_dir, progress=False)
    keras.utils.set_random_seed(cfg.seed)
    spec = cfg.spectrogram_config()
    shape = input_shape(cfg)
    time_multiple = cfg.model.time_stride
    num_samples = cfg.spectrogram.num_samples
    sr = cfg.spectrogram.sample_rate

    def images_of(split: str, limit: int | None) -> np.ndarray:
        waves = _load_split(data_dir, split, limit, num_samples, sr, cfg.seed)
        return np.asarray(waveform_to_image(waves, spec, time_multiple=time_multiple), np.float32)

    t0 = time.time()
    train_images = images_of("train", max_train or cfg.dataset.max_train)
    try:
        held_out = images_of("valid", cfg.dataset.max_valid)
    except DatasetError:
        held_out = train_images[: cfg.dataset.max_valid or 64]
    if train_images.shape[1:] != shape:
        raise ValueError(f"images of shape {train_images.shape[1:]} do not match the model "
                         f"input {shape}")
    log.info("loaded %d training clips in %.0f s", len(train_images), time.time() - t0)

    model = build_model(cfg.model, shape)
    compile_model(model, learning_rate=cfg.training.learning_rate)
    model.fit(train_images, train_images, batch_size=cfg.training.batch_size,
              epochs=epochs or cfg.training.epochs, shuffle=True,
              verbose=cfg.training.verbose)
    log.info("trained in %.0f s", time.time() - t0)

    codes = model.encode(train_images)
    counts = entropy.estimate_counts(codes, cfg.model.num_embeddings)
    rates = measure_bitrates(model, held_out, counts, cfg.spectrogram.duration)
    log.info("bitrate per stage count (kbit/s): %s", rates)
    info = CodecInfo(spectrogram=dict(sample_rate=sr, frame_length=spec.frame_length,
                                      frame_step=spec.frame_step,
                                      duration=float(cfg.spectrogram.duration),
                                      dynamic_range_db=float(cfg.spectrogram.dynamic_range_db)),
                     time_multiple=time_multiple, grid=tuple(model.latent_shape),
                     num_stages=cfg.model.num_stages, num_embeddings=cfg.model.num_embeddings,
                     counts=counts.tolist(), weights_sha256=weights_sha256(model),
                     iterations=cfg.phase_reconstruction.n_iter, bitrate_kbps=rates)
    if max(info.grid) > container.MAX_GRID_SIDE:
        raise ValueError(f"code grid {info.grid} exceeds the .vqz format's limit")
    return save_codec_model(out_dir or default_model_dir(), model, info)
