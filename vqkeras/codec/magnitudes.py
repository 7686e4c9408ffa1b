"""Codes -> linear magnitudes: one signal's code cells decoded chunk by chunk.

Each chunk's codes, with `framing.CONTEXT_CELLS` of context on either side
(silence beyond the signal's ends), go through the decoder network
(`vqkeras.codec.networks`) and back from the model's image to the linear
magnitude of its STFT; cells coded as silence are gated to zero. The
encoder uses this too, to predict the decoded loudness
(`vqkeras.codec.loudness_correction`).
"""

from __future__ import annotations

import numpy as np

from vqkeras.codec import framing
from vqkeras.codec.codec_model import CodecInfo, CodecModel
from vqkeras.codec.networks import _batch_size, _decode_codes, _padded, _silence_codes

SILENCE_RAMP_FRAMES = 4
"""Frames over which the decoded gain falls to 0 inside a run of silent cells (`_silence_gate`)."""


def _spec_config(info: CodecInfo):
    from vqkeras.features import SpectrogramConfig

    return SpectrogramConfig(**info.spectrogram)


def _k_weights(info: CodecInfo) -> np.ndarray:
    """K-weighting power per STFT bin, of the filter the encoder runs at the model rate."""
    from vqkeras.codec.loudness import k_weight_power

    bins = int(info.spectrogram["frame_length"]) // 2 + 1
    return k_weight_power(np.linspace(0.0, info.sample_rate / 2, bins), info.sample_rate)


def _chunk_codes(codes: np.ndarray, silence: np.ndarray, chunk: int) -> np.ndarray:
    """Codes of one chunk with context ``(chunk cells + 2 context, width, stages)``."""
    cells = codes.shape[0]
    lo = chunk * framing.CHUNK_CELLS - framing.CONTEXT_CELLS
    hi = (chunk + 1) * framing.CHUNK_CELLS + framing.CONTEXT_CELLS
    out = np.broadcast_to(silence[None, :, :codes.shape[-1]],
                          (hi - lo, *codes.shape[1:])).astype(np.int32)
    a, b = max(lo, 0), min(hi, cells)
    if b > a:
        out[a - lo:b - lo] = codes[a:b]
    return out


def _decoded_magnitudes(codec: CodecModel, codes: np.ndarray, chunks: range) -> np.ndarray:
    """Linear magnitudes ``(len(chunks), chunk_frames, bins)`` decoded from one signal's codes."""
    from vqkeras.features import image_to_magnitude

    info = codec.info
    g = framing.Geometry.of(info)
    silence = _silence_codes(codec)
    batch = _batch_size(g.num_chunks(codes.shape[0]))
    out = []
    chunk_list = list(chunks)
    for i in range(0, len(chunk_list), batch):
        part = chunk_list[i:i + batch]
        stack = np.stack([_chunk_codes(codes, silence, k) for k in part])
        images = _decode_codes(codec, _padded(stack, batch))[:len(part)]
        mags = image_to_magnitude(images, _spec_config(info), num_frames=g.chunk_frames)
        out.append(mags * _silence_gate(stack, silence, g.cell_frames)[..., None])
    return np.concatenate(out)


def _silence_gate(stack: np.ndarray, silence: np.ndarray, cell_frames: int) -> np.ndarray:
    """Frame gains ``(chunks, frames)``: 0 in cells coded as silence, 1 elsewhere.

    The encoder codes cells of digital silence with exactly the codes of
    silence (at every stage). The decoder network turns them into a noise
    floor (about -70 dB under the segment's peak, and higher at one stage),
    which a loudness meter's absolute gate lets through: its blocks then
    dilute the relative gate, and the meter's reading of a short sound in
    silence jumps by up to 14 LU with small changes of the decoded tail.
    Gating those cells to zero gives silence for silence; the gain ramps over
    `SILENCE_RAMP_FRAMES` inside the silent run, so sounds keep their edges.
    """
    stages = stack.shape[-1]
    silent = np.all(stack == silence[None, None, :, :stages], axis=(2, 3))
    frames = np.repeat(silent, cell_frames, axis=1)
    gain = (~frames).astype(np.float32)
    for step in range(1, SILENCE_RAMP_FRAMES):
        near = np.zeros_like(frames)  # silent frames `step` frames from a sounding one
        near[:, step:] |= ~frames[:, :-step]
        near[:, :-step] |= ~frames[:, step:]
        gain = np.maximum(gain, np.where(near & frames, 1.0 - step / SILENCE_RAMP_FRAMES, 0.0))
    return gain
