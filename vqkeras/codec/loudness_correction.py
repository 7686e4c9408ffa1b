"""The per-segment loudness corrections the encoder stores for the decoder.

The model loses level (more on some sounds than others). For each segment
the encoder stores the gain that makes a BS.1770 meter (`vqkeras.codec.loudness`)
read the input's loudness on the decoded signal, predicted from the decoded
spectrogram (`vqkeras.codec.magnitudes`) without a trial decode.
"""

from __future__ import annotations

import numpy as np

from vqkeras.codec import container, framing
from vqkeras.codec.codec_model import CodecModel
from vqkeras.codec.magnitudes import _decoded_magnitudes, _k_weights
from vqkeras.codec.networks import _batch_size

LOUDNESS_SLOT = 64
"""Samples per loudness slot (half a hop): 100 ms is 25 of them at 16 kHz."""


def loudness_corrections(codec: CodecModel, codes: np.ndarray, energies: np.ndarray,
                         gains: np.ndarray, stages: int, length: int) -> np.ndarray:
    """Per-segment loudness corrections (int8 codes) that undo the model's level loss.

    Each segment's correction makes a BS.1770 meter read the same on the
    decoded segment as on the input, each signal measured on its own
    (`vqkeras.codec.loudness`). The input side is exact (its K-filtered
    samples). The output side is predicted from the decoder network's
    spectrogram times the gain envelope, under K-weighting: the decoder's
    phase reconstruction keeps the spectrogram's energy region by region
    (``keep_energy``), so no trial decode is needed.

    Parameters
    ----------
    codes : np.ndarray [shape=(cells, width, >= stages)]
    energies : np.ndarray [shape=(cells * cell_frames * frame_step // LOUDNESS_SLOT,)]
        K-filtered input energy per slot (`vqkeras.codec.encoding._encode_signals`).
    gains : np.ndarray [shape=(segments,)]
        Linear segment gains.
    stages : int
        Stages that are stored.
    length : int
        Samples of the signal at the model rate.
    """
    from vqkeras.codec.loudness import matching_gain_db

    info = codec.info
    g = framing.Geometry.of(info)
    weight = _k_weights(info)
    chunks = g.num_chunks(codes.shape[0])
    context_frames = framing.CONTEXT_CELLS * g.cell_frames
    chunk_frames = framing.CHUNK_CELLS * g.cell_frames
    decoded = np.zeros(codes.shape[0] * g.cell_frames)
    step = _batch_size(chunks)
    for first in range(0, chunks, step):
        part = range(first, min(chunks, first + step))
        mags = _decoded_magnitudes(codec, codes[..., :stages], part)
        for i, k in enumerate(part):
            f0 = k * chunk_frames
            keep = min(chunk_frames, len(decoded) - f0)
            centre = mags[i, context_frames:context_frames + keep]
            decoded[f0:f0 + keep] = (centre.astype(np.float64) ** 2) @ weight
    # One-sided STFT energy -> the samples' energy over one hop (Parseval, and
    # the squared window summing to sum(w^2) / hop over overlapping frames).
    window = framing.hann(g.frame_length).astype(np.float64)
    decoded *= 2.0 * g.frame_step / (g.frame_length * np.sum(window ** 2))
    decoded *= np.interp(np.arange(len(decoded)) * g.frame_step,
                         g.segment_centres(len(gains)), gains) ** 2
    # Frame f is centred on sample f * hop: half of it to each slot around.
    per_frame = g.frame_step // LOUDNESS_SLOT
    predicted = np.roll(np.repeat(decoded / per_frame, per_frame), -(per_frame // 2))
    predicted[-(per_frame // 2):] = 0.0
    out = np.zeros(len(gains), np.int8)
    for k in range(len(gains)):
        lo = k * g.segment // LOUDNESS_SLOT
        hi = min((k + 1) * g.segment, length) // LOUDNESS_SLOT
        if hi > lo:
            out[k] = container.quantize_loudness(
                matching_gain_db(energies[lo:hi], predicted[lo:hi], LOUDNESS_SLOT, g.sample_rate))
    return out
