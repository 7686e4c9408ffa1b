"""Compression, pass 2: audio -> spectrogram images -> RVQ codes, chunk by chunk.

The coded signals, divided by their gain envelope (`vqkeras.codec.framing`),
become centred-frame spectrogram images a few chunks at a time; the encoder
network (`vqkeras.codec.networks`) turns each chunk, with context, into the
codes of one continuous cell sequence per signal. The same pass measures the
K-filtered input energy the loudness corrections match
(`vqkeras.codec.loudness_correction`).
"""

from __future__ import annotations

import numpy as np

from vqkeras.codec import framing
from vqkeras.codec.codec_model import CodecModel
from vqkeras.codec.loudness_correction import LOUDNESS_SLOT
from vqkeras.codec.magnitudes import _spec_config
from vqkeras.codec.networks import _batch_size, _encode_images, _padded, _progress


def _encode_signals(codec: CodecModel, window: framing.SampleWindow, gains: np.ndarray,
                    active: list[int], length: int, progress: bool
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Codes and input loudness slots of the coded signals, chunk by chunk.

    Returns
    -------
    codes : np.ndarray [shape=(signals, cells, width, stages), uint8 or int32]
    energies : np.ndarray [shape=(signals, cells * cell_frames * 2)]
        Energy of the K-filtered input (not normalised) in half-hop slots
        (`LOUDNESS_SLOT` samples), the input side of `loudness_corrections`.
    """
    from vqkeras.codec.loudness import k_filtered_energy
    from vqkeras.features import magnitude_to_image

    info = codec.info
    g = framing.Geometry.of(info)
    config = _spec_config(info)
    cells, chunks = g.num_cells(length), g.num_chunks(g.num_cells(length))
    signals = gains.shape[0]
    codes = np.zeros((signals, cells, info.grid[1], info.num_stages),
                     np.uint8 if info.num_embeddings <= 256 else np.int32)
    slots_per_frame = g.frame_step // LOUDNESS_SLOT
    energies = np.zeros((signals, cells * g.cell_frames * slots_per_frame))
    batch = _batch_size(chunks)
    half = g.frame_length // 2
    chunk_frames = framing.CHUNK_CELLS * g.cell_frames
    context_frames = framing.CONTEXT_CELLS * g.cell_frames
    bar = _progress(chunks, "compress") if progress else None
    for first in range(0, chunks, batch):
        n = min(batch, chunks - first)
        frame0 = first * chunk_frames - context_frames
        a = frame0 * g.frame_step - half
        b = a + ((n - 1) * chunk_frames + g.chunk_frames - 1) * g.frame_step + g.frame_length
        samples = window.get(a, b)
        env = framing.envelope(gains, g, a, b)
        normalised = np.where(env > 0, samples / np.maximum(env, 1e-30), 0.0)
        normalised = np.clip(normalised, -1.0, 1.0).astype(np.float32)
        for s in active:
            mags = framing.chunk_magnitudes(normalised[s], g, n)
            images = magnitude_to_image(mags, config, time_multiple=g.cell_frames)
            out = _encode_images(codec, _padded(images, batch), info.num_stages)[:n]
            # Slots from sample `a` on (a multiple of the slot); the context
            # before each chunk's centre lets the K-filter settle.
            slots = k_filtered_energy(samples[s], g.sample_rate, LOUDNESS_SLOT)
            for i in range(n):
                c0 = (first + i) * framing.CHUNK_CELLS
                keep = min(framing.CHUNK_CELLS, cells - c0)
                if keep <= 0:
                    continue
                codes[s, c0:c0 + keep] = out[i, framing.CONTEXT_CELLS:framing.CONTEXT_CELLS + keep]
                lo, hi = (c0 * g.cell_frames * slots_per_frame,
                          (c0 + keep) * g.cell_frames * slots_per_frame)
                offset = (frame0 * g.frame_step - half) // LOUDNESS_SLOT
                energies[s, lo:hi] = slots[lo - offset:hi - offset]
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()
    return codes, energies
