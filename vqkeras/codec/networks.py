"""The codec model's networks as compiled programs: images -> codes -> images.

Both sides of the codec run the trained encoder and decoder on chunks of
spectrogram images (`vqkeras.codec.framing`), a few chunks per call
(`BATCH_CHUNKS`). On JAX each network is one whole XLA program, saved with
`jax.export` in the user cache (`vqkeras.exported`) so a warm command needs
neither Keras nor the model file; elsewhere the Keras model runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from vqkeras.codec import framing
from vqkeras.codec.codec_model import CodecModel, load_codec_model

BATCH_CHUNKS = 4
"""Chunks per network call for inputs of more than one chunk (bounded memory)."""


def _as_model(model: str | Path | CodecModel | None) -> CodecModel:
    return model if isinstance(model, CodecModel) else load_codec_model(model)


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    # Only draw a bar for long inputs on an interactive terminal.
    return tqdm(total=total, desc=desc, unit="chunk", leave=False,
                disable=total < 4 or not sys.stderr.isatty())


def _batch_size(chunks: int) -> int:
    return 1 if chunks == 1 else BATCH_CHUNKS


def _padded(batch: np.ndarray, size: int) -> np.ndarray:
    """``batch`` padded with zeros to ``size`` items: one program shape per file."""
    if len(batch) == size:
        return batch
    out = np.zeros((size, *batch.shape[1:]), batch.dtype)
    out[:len(batch)] = batch
    return out


def _model_key(codec: CodecModel) -> dict:
    # The model file's size and time too: a replaced or damaged codec.keras is
    # loaded (and its error reported) instead of served from an old program.
    info = codec.info
    model_file = Path(codec.model_path) if codec.model_path is not None else None
    stat = model_file.stat() if model_file is not None and model_file.is_file() else None
    return {"model": info.model_id.hex(), "spectrogram": info.spectrogram,
            "model_file": [stat.st_size, stat.st_mtime_ns] if stat else None}


def _program(codec: CodecModel, name: str, key: dict, example: np.ndarray, body):
    """``body(net)`` as one function of an array: a saved XLA program, a jit, or Keras.

    On JAX with the cache on, the program is saved with `jax.export`
    (`vqkeras.exported`), so a warm command needs neither Keras nor the
    model file. On JAX without it, one `jax.jit` per process (Keras on JAX
    otherwise traces op by op). On other backends, the Keras model eagerly
    (on torch without autograd: inference needs no graph, and a tensor that
    records one cannot become a numpy array).
    """
    from vqkeras.exported import load_or_export

    def build():
        import jax

        return jax.jit(body(codec.keras_model))

    fn = load_or_export(name, {**_model_key(codec), **key}, example, build)
    if fn is not None:
        return fn
    import keras

    cache = codec.__dict__.setdefault("_compiled", {})
    full = (name, tuple(sorted((k, str(v)) for k, v in key.items())), example.shape)
    if full not in cache:
        fn = body(codec.keras_model)
        if keras.backend.backend() == "jax":
            import jax

            fn = jax.jit(fn)
        elif keras.backend.backend() == "torch":
            fn = _torch_inference(fn)
        cache[full] = fn
    return cache[full]


def _torch_inference(fn):
    """`fn` under `torch.no_grad`, numpy out."""
    import keras
    import torch

    def call(x):
        with torch.no_grad():
            return keras.ops.convert_to_numpy(fn(x))

    return call


def _any_length(network):
    """A copy of a functional network (same weights) that takes any number of frames.

    The trained encoder and decoder declare the 4-s image size they were
    trained on; being convolutional, they apply to any length.
    """
    import keras

    shape = tuple(network.inputs[0].shape[1:])
    flexible = keras.Input((None, *shape[1:]), name=network.inputs[0].name)
    twin = keras.models.clone_model(network, input_tensors=flexible)
    twin.set_weights(network.get_weights())
    return twin


def _networks(codec: CodecModel):
    """``(encoder, quantizer, decoder)`` of the codec model, encoder and decoder of any length."""
    if "_networks" not in codec.__dict__:
        net = codec.keras_model
        codec.__dict__["_networks"] = (_any_length(net.encoder), net.quantizer,
                                       _any_length(net.decoder))
    return codec.__dict__["_networks"]


def _encode_images(codec: CodecModel, images: np.ndarray, stages: int) -> np.ndarray:
    """RVQ codes ``(n, cells, width, stages)`` of images ``(n, frames, bins, 1)``."""
    def body(_):
        encoder, quantizer, _ = _networks(codec)
        return lambda x: quantizer.encode(encoder(x, training=False), num_stages=stages)

    fn = _program(codec, "encoder", {"stages": stages, "shape": images.shape}, images, body)
    return np.asarray(fn(images), dtype=np.int32)


def _decode_codes(codec: CodecModel, codes: np.ndarray) -> np.ndarray:
    """Images ``(n, frames, bins, 1)`` of codes ``(n, cells, width, stages)``."""
    def body(_):
        _, quantizer, decoder = _networks(codec)
        return lambda i: decoder(quantizer.decode(i), training=False)

    fn = _program(codec, "decoder", {"shape": codes.shape}, codes, body)
    return np.asarray(fn(codes), dtype=np.float32)


def _silence_codes(codec: CodecModel) -> np.ndarray:
    """Codes ``(width, stages)`` of silence: the context beyond a signal's ends."""
    if "_silence" not in codec.__dict__ and codec.info.silence_codes is not None:
        codec.__dict__["_silence"] = np.asarray(codec.info.silence_codes, np.int32)
    if "_silence" not in codec.__dict__:
        g = framing.Geometry.of(codec.info)
        zeros = np.zeros((1, g.chunk_frames, g.frame_length // 2, 1), np.float32)
        codes = _encode_images(codec, zeros, codec.info.num_stages)
        codec.__dict__["_silence"] = codes[0, codes.shape[1] // 2]
    return codec.__dict__["_silence"]
