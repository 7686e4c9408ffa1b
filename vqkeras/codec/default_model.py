"""Train the codec model shipped in ``vqkeras/assets``.

`train_default_model` reads ``experiments/codec-default.yaml`` (a residual-VQ
VQ-VAE with a coarse 31 x 16 code grid per 4-s window), trains it on the
codec mix (`vqkeras.data.codec_mix`: soundfont notes, recorded drums, LMMS
samples and synthesised speech) with a plain ``model.fit`` (peak-normalised
clips, exactly as the codec normalises its windows), then measures what the
codec needs:

- per-stage code counts on the training clips (add-one smoothed: the entropy
  coder's probability tables);
- the context tables of the version-4 entropy coder on the same codes
  (`vqkeras.codec.entropy.estimate_context_tables`);
- the average coded bitrate for each stage count on held-out clips (what
  ``--bitrate`` chooses from), with the context coder;

and writes a bundle (``codec.keras`` + ``codec.json`` + ``context.npz``) with
the SHA-256 of the weights and tables as the model's identity.

`fit_context_model` adds context tables to an existing bundle (frozen
weights): ``vqkeras codec fit-context``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from vqkeras.codec import container, entropy, framing
from vqkeras.codec.codec_model import (CodecInfo, CodecModelError, default_model_dir,
                                       retire_default_bundle, save_codec_model, weights_sha256)

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "codec-default.yaml"


def measure_bitrates(model, images: np.ndarray, counts: np.ndarray, window_seconds: float,
                     tables: entropy.ContextTables | None = None) -> dict[str, float]:
    """Average coded kbit/s per stage count: payload + one gain byte per window.

    With ``tables`` the payloads are context coded (format version 4), else
    coded with the static ``counts`` (version 3). The container's fixed
    header and checksum (64 bytes per file) are left out: they do not grow
    with the duration.
    """
    return code_bitrates(model.encode(images), counts, window_seconds, tables)


def code_bitrates(codes: np.ndarray, counts: np.ndarray, window_seconds: float,
                  tables: entropy.ContextTables | None = None) -> dict[str, float]:
    """`measure_bitrates` of codes ``(clips, T, w, stages)``, one window per clip."""
    def coded_bytes(c: np.ndarray) -> int:
        if tables is None:
            return len(entropy.encode_indices(c[None], counts))
        return len(entropy.encode_context(c, tables))

    rates = {}
    for stages in range(1, codes.shape[-1] + 1):
        bits = [8 * coded_bytes(c[..., :stages]) + 8 for c in codes]
        rates[str(stages)] = round(float(np.mean(bits)) / window_seconds / 1000.0, 4)
    return rates


def mix_codes(codec, data_dir: str | os.PathLike, split: str, *, limit: int | None = None,
              seed: int = 0) -> np.ndarray:
    """RVQ codes ``(clips, T, w, stages)`` of a codec mix split through a codec model.

    Each peak-normalised 4-s clip is one window, as in training
    (`train_default_model`); ``limit`` keeps the same seeded subset as
    `vqkeras.data.codec_mix.load_mix`.
    """
    from vqkeras.data.codec_mix import load_mix

    waves, _ = load_mix(data_dir, split, limit=limit, seed=seed)
    return clip_codes(codec, waves)


def clip_codes(codec, waves: np.ndarray, batch: int = 128) -> np.ndarray:
    """RVQ codes ``(clips, T, w, stages)`` of 4-s clips ``(clips, samples)`` (one window each)."""
    from vqkeras.features import SpectrogramConfig, waveform_to_image

    info = codec.info
    spec = SpectrogramConfig(**info.spectrogram)
    model = codec.keras_model
    out = []
    for i in range(0, len(waves), batch):
        images = np.asarray(waveform_to_image(waves[i:i + batch], spec,
                                              time_multiple=info.time_multiple), np.float32)
        out.append(np.asarray(model.encode(images), np.int32))
    codes = np.concatenate(out)
    if codes.shape[1:] != (*info.grid, info.num_stages):
        raise CodecModelError(f"codes of shape {codes.shape[1:]} do not match the bundle's grid "
                              f"{info.grid} and {info.num_stages} stages")
    return codes


def fit_context_model(model: str | os.PathLike | None, data_dir: str | os.PathLike,
                      out_dir: str | os.PathLike, *, max_train: int | None = None,
                      max_valid: int = 128, seed: int = 0) -> Path:
    """A new bundle: ``model``'s weights and static tables plus fitted context tables.

    The (frozen) model codes the mix's TRAIN clips; their context counts
    become ``context.npz`` (`vqkeras.codec.entropy.estimate_context_tables`).
    ``bitrate_kbps`` is measured again with the context coder on up to
    ``max_valid`` TEST clips (the clips `train_default_model` measures on).
    The new bundle has a new model id; files made with the old one need the
    old bundle (the shipped one keeps it under ``vqkeras/assets/legacy``).

    Parameters
    ----------
    model : str, PathLike or None
        Bundle folder (default: the shipped model).
    data_dir : str or PathLike
        The codec mix (``vqkeras data mix``).
    out_dir : str or PathLike
        New bundle folder: must not exist, or be empty.

    Raises
    ------
    CodecModelError
        For a missing bundle or an output folder in use.
    DatasetError
        For a missing or malformed mix.
    """
    import shutil

    from vqkeras.codec.codec_model import BUNDLE_MODEL, load_codec_model, save_bundle_info

    codec = load_codec_model(model)
    out = Path(out_dir)
    check_new_bundle(codec, out, data_dir)
    info = codec.info
    t0 = time.time()
    train_codes = mix_codes(codec, data_dir, "train", limit=max_train, seed=seed)
    log.info("coded %d training clips in %.0f s", len(train_codes), time.time() - t0)
    tables = entropy.estimate_context_tables(train_codes, info.counts_array, seed=seed)
    held_out = mix_codes(codec, data_dir, "test", limit=max_valid, seed=seed)
    new = CodecInfo.from_json(info.to_json())
    new.set_context_tables(tables)
    new.bitrate_kbps = code_bitrates(held_out, info.counts_array, info.window_samples
                                     / info.sample_rate, tables)
    log.info("bitrate per stage count (kbit/s): %s (static tables: %s)", new.bitrate_kbps,
             info.bitrate_kbps)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(Path(codec.model_path), out / BUNDLE_MODEL)
    save_bundle_info(out, new)
    return out


def check_new_bundle(codec, out_dir: Path, data_dir: str | os.PathLike) -> None:
    """Refuse, before any work, an output folder that is ``codec``'s own, or in use, or a
    ``data_dir`` that is not a codec mix (`fit_context_model`, `finetune_decoder`)."""
    from vqkeras.data.codec_mix import MARKER
    from vqkeras.errors import DatasetError

    if codec.model_path is not None and out_dir.resolve() == Path(codec.model_path).parent.resolve():
        raise CodecModelError(f"--out {out_dir}: must differ from the bundle it starts from")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise CodecModelError(f"--out {out_dir}: exists and is not an empty folder (the new "
                              f"bundle needs a folder of its own)")
    if not (Path(data_dir) / MARKER).is_file():
        raise DatasetError(f"{data_dir}: not a codec mix (build it: vqkeras data mix --out "
                           f"{data_dir})")


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
        Bundle folder (default: ``vqkeras/assets``, whose current bundle then
        moves to ``vqkeras/assets/legacy/<model id>/``: its files keep decoding).
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
    tables = entropy.estimate_context_tables(codes, counts, seed=cfg.seed)
    rates = measure_bitrates(model, held_out, counts, cfg.spectrogram.duration, tables)
    log.info("bitrate per stage count (kbit/s): %s", rates)
    info = CodecInfo(spectrogram=dict(sample_rate=sr, frame_length=spec.frame_length,
                                      frame_step=spec.frame_step,
                                      duration=float(cfg.spectrogram.duration),
                                      dynamic_range_db=float(cfg.spectrogram.dynamic_range_db)),
                     time_multiple=time_multiple, grid=tuple(model.latent_shape),
                     num_stages=cfg.model.num_stages, num_embeddings=cfg.model.num_embeddings,
                     counts=counts.tolist(), weights_sha256=weights_sha256(model),
                     iterations=cfg.phase_reconstruction.n_iter, bitrate_kbps=rates)
    info.set_context_tables(tables)
    if max(info.grid) > container.MAX_GRID_SIDE:
        raise ValueError(f"code grid {info.grid} exceeds the .vqz format's limit")
    out = Path(out_dir) if out_dir is not None else default_model_dir()
    if out.resolve() == default_model_dir().resolve():
        retired = retire_default_bundle()  # files of the model it replaces keep decoding
        if retired is not None:
            log.info("the previous shipped bundle is now %s", retired)
    return add_silence_codes(save_codec_model(out, model, info))


def add_silence_codes(bundle: Path) -> Path:
    """Store the codes of silence in the bundle's ``codec.json`` (the decoder then needs
    no encoder for the context beyond a signal's ends)."""
    from vqkeras.codec.codec_model import BUNDLE_JSON, load_codec_model
    from vqkeras.codec.networks import _silence_codes

    codec = load_codec_model(bundle)
    codec.info.silence_codes = _silence_codes(codec).astype(int).tolist()
    (Path(bundle) / BUNDLE_JSON).write_text(codec.info.to_json())  # context.npz is unchanged
    return Path(bundle)
