"""Train the codec model shipped in ``vqkeras/assets``.

`train_default_model` reads ``experiments/codec-default.yaml`` (a residual-VQ
VQ-VAE with a coarse 31 x 16 code grid per 4-s window), trains it on the
codec mix (`vqkeras.data.codec_mix`: soundfont notes, recorded drums, LMMS
samples and synthesised speech) with a plain ``model.fit`` (peak-normalised
clips, exactly as the codec normalises its windows), then measures what the
codec needs:

- per-stage code counts on the training clips (add-one smoothed: the entropy
  coder's probability tables);
- the average coded bitrate for each stage count on held-out clips (what
  ``--bitrate`` chooses from);

and writes a bundle (``codec.keras`` + ``codec.json``) with the SHA-256 of
the weights as the model's identity.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from vqkeras.codec import container, entropy, framing
from vqkeras.codec.codec_model import CodecInfo, default_model_dir, save_codec_model, weights_sha256

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "codec-default.yaml"


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


def train_default_model(data_dir: str | os.PathLike = "data/codec-mix",
                        out_dir: str | os.PathLike | None = None, *,
                        config: str | os.PathLike | None = None,
                        epochs: int | None = None, max_train: int | None = None) -> Path:
    """Train the shipped codec model and write its bundle.

    Parameters
    ----------
    data_dir : str or PathLike
        The codec mix (``vqkeras data mix --out DIR``); built here if it does
        not exist (this needs the Debian packages that
        `vqkeras.data.codec_mix` names).
    out_dir : str or PathLike, optional
        Bundle folder (default: ``vqkeras/assets``).
    config : str or PathLike, optional
        Experiment YAML (default: ``experiments/codec-default.yaml``).
    epochs, max_train : int, optional
        Override the YAML (quick runs and tests). The bitrate per stage count
        is measured on up to ``dataset.max_valid`` of the mix's TEST clips.

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
    from vqkeras.data.codec_mix import MARKER, build_mix, load_mix

    data_dir = Path(data_dir)
    if not (data_dir / MARKER).is_file():
        log.info("collecting the codec mix into %s", data_dir)
        build_mix(data_dir)
    keras.utils.set_random_seed(cfg.seed)
    spec = cfg.spectrogram_config()
    shape = input_shape(cfg)
    time_multiple = cfg.model.time_stride
    sr = cfg.spectrogram.sample_rate
    least = framing.min_cell_frames(spec.frame_length, spec.frame_step)
    if time_multiple < least:  # before training, not after
        raise ValueError(f"the codec needs a time stride of at least {least}; the YAML's "
                         f"strides give {time_multiple}")
    if sr != 16000 or cfg.spectrogram.num_samples != 64000:
        raise ValueError("the codec mix holds 4-s clips at 16 kHz; the YAML asks for "
                         f"{cfg.spectrogram.duration} s at {sr} Hz")

    def images_of(split: str, limit: int | None) -> np.ndarray:
        waves, _ = load_mix(data_dir, split, limit=limit, seed=cfg.seed)
        return np.asarray(waveform_to_image(waves, spec, time_multiple=time_multiple), np.float32)

    t0 = time.time()
    train_images = images_of("train", max_train or cfg.dataset.max_train)
    held_out = images_of("test", cfg.dataset.max_valid)
    if train_images.shape[1:] != shape:
        raise ValueError(f"images of shape {train_images.shape[1:]} do not match the model "
                         f"input {shape}")
    log.info("loaded %d training clips in %.0f s", len(train_images), time.time() - t0)

    model = build_model(cfg.model, shape)
    epochs = epochs or cfg.training.epochs
    steps = epochs * math.ceil(len(train_images) / cfg.training.batch_size)
    compile_model(model, learning_rate=cfg.training.learning_rate,
                  schedule=cfg.training.lr_schedule, total_steps=steps)
    model.fit(train_images, train_images, batch_size=cfg.training.batch_size,
              epochs=epochs, shuffle=True,
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
    return add_silence_codes(save_codec_model(out_dir or default_model_dir(), model, info))


def add_silence_codes(bundle: Path) -> Path:
    """Store the codes of silence in the bundle's ``codec.json`` (the decoder then needs
    no encoder for the context beyond a signal's ends)."""
    from vqkeras.codec.codec_model import BUNDLE_JSON, load_codec_model
    from vqkeras.codec.networks import _silence_codes

    codec = load_codec_model(bundle)
    codec.info.silence_codes = _silence_codes(codec).astype(int).tolist()
    (Path(bundle) / BUNDLE_JSON).write_text(codec.info.to_json())
    return Path(bundle)
