"""Streaming encode and decode: block-by-block I/O gives the same files, in bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import soxr

from vqkeras.codec import compress, decompress, framing, magnitudes, networks, stream
from vqkeras.codec.analysis import _STEREO_CANDIDATES
from vqkeras.codec.codec_model import load_codec_model
from vqkeras.codec.unpack import read_vqz

ITERATIONS = 8


@pytest.fixture(scope="module")
def codec():
    return load_codec_model()


@pytest.fixture
def small_blocks(monkeypatch):
    """One chunk per network call and 1000-sample I/O blocks: many blocks per chunk."""
    monkeypatch.setattr(networks, "BATCH_CHUNKS", 1)
    monkeypatch.setattr(stream, "BLOCK_VALUES", 1000)


def _clip(notes, seconds: float, rate: int = 44100, channels: int = 2) -> np.ndarray:
    """Real notes end to end, resampled to ``rate``, each channel at its own level."""
    mono = np.concatenate([notes[i % len(notes)] for i in range(int(np.ceil(seconds / 4)))])
    mono = soxr.resample(mono, 16000, rate)[:int(seconds * rate) + 7]  # odd length
    return np.stack([mono * (0.9 - 0.2 * c) for c in range(channels)], axis=1).astype("float32")


def test_read_blocks_match_reading_the_whole_file(notes, tmp_path, small_blocks):
    from vqkeras.audio_io import read_wav
    from vqkeras.codec.framing import SampleWindow

    path = tmp_path / "in.wav"
    clip = _clip(notes, 9.0, 44100, 3)
    sf.write(path, clip, 44100, subtype="FLOAT")
    whole = read_wav(path, sample_rate=16000, mono=True)
    blocks = list(stream.read_blocks(path, 16000))
    assert len(blocks) > 10 and all(b.shape[0] == 1 for b in blocks)
    np.testing.assert_allclose(np.concatenate(blocks, axis=1)[0], whole, atol=2e-4)
    # Other mixes: the first two channels, as left/right/mid/side.
    mix = np.zeros((3, 4), np.float32)
    mix[:2] = _STEREO_CANDIDATES
    signals = np.concatenate(list(stream.read_blocks(path, 16000, mix)), axis=1)
    left = soxr.resample(clip[:, 0], 44100, 16000, quality="HQ")
    np.testing.assert_allclose(signals[0, 1000:-1000], left[1000:len(signals[0]) - 1000],
                               atol=2e-3)
    np.testing.assert_allclose(signals[2] + signals[3], signals[0], atol=1e-6)
    # Random access moving forwards: zeros outside the signal, exact inside.
    length = len(whole)
    window = SampleWindow(stream.read_blocks(path, 16000), 1, length)
    for a in (-300, 0, 5000, 70_000, length - 100):
        np.testing.assert_allclose(window.get(a, a + 1000)[0],
                                   np.pad(whole, 2000)[a + 2000:a + 3000] if a + 1000 <= length
                                   else np.concatenate([whole[a:], np.zeros(a + 1000 - length)]),
                                   atol=2e-4)


def test_stream_writer_exact_length_and_channels(notes, tmp_path, small_blocks):
    signal = np.concatenate([notes[0], notes[1][:20001]])
    length, num_samples = len(signal), int(np.ceil(len(signal) * 44100 / 16000))
    writer = stream.StreamWriter(tmp_path / "o.flac", "FLAC", "PCM_16", 16000, 44100, 3,
                                 length, num_samples)
    for piece in np.array_split(np.concatenate([signal, np.ones(999, np.float32)]), 7):
        writer.write(piece)  # uneven pieces; the 999 samples past `length` are dropped
    writer.close()
    audio, rate = sf.read(tmp_path / "o.flac", dtype="float32")
    assert rate == 44100 and audio.shape == (num_samples, 3)
    assert np.array_equal(audio[:, 0], audio[:, 2])
    reference = soxr.resample(signal, 16000, 44100, quality="HQ")[:num_samples]
    np.testing.assert_allclose(audio[:len(reference), 0], reference, atol=2e-3)


@pytest.mark.backend
def test_small_batches_and_blocks_give_the_same_files(codec, notes, tmp_path, monkeypatch):
    src = tmp_path / "in.wav"
    sf.write(src, _clip(notes, 9.0), 44100, subtype="PCM_16")
    big = compress(src, tmp_path / "big.vqz", model=codec, progress=False)
    decompress(big, tmp_path / "big.wav", model=codec, iterations=ITERATIONS, progress=False)
    header, _, _, indices = read_vqz(big.read_bytes(), codec.info)
    chunks = range(framing.Geometry.of(codec.info).num_chunks(header.num_cells))
    batched = magnitudes._decoded_magnitudes(codec, indices[0], chunks)
    monkeypatch.setattr(networks, "BATCH_CHUNKS", 1)
    monkeypatch.setattr(stream, "BLOCK_VALUES", 1000)
    small = compress(src, tmp_path / "small.vqz", model=codec, progress=False)
    assert small.read_bytes() == big.read_bytes()
    # One chunk per decoder call gives the same spectrogram up to float
    # rounding (TensorFlow's convolutions round differently per batch size).
    single = magnitudes._decoded_magnitudes(codec, indices[0], chunks)
    assert len(chunks) > 1 and single.shape == batched.shape
    np.testing.assert_allclose(single, batched, rtol=0, atol=1e-4 * batched.max())
    # I/O in small blocks gives the same audio. Decoding is kept at the first
    # run's batch: phase reconstruction is chaotic in near-silent bins, so the
    # rounding above can turn the phase of everything after a pause.
    monkeypatch.setattr(networks, "BATCH_CHUNKS", 4)
    decompress(small, tmp_path / "small.wav", model=codec, iterations=ITERATIONS, progress=False)
    a, rate = sf.read(tmp_path / "big.wav", dtype="float32")
    b, _ = sf.read(tmp_path / "small.wav", dtype="float32")
    assert rate == 44100 and a.shape == b.shape == (sf.info(str(src)).frames, 2)
    np.testing.assert_array_equal(a, b)


def _peak_traced(fn) -> int:
    """Peak bytes allocated through Python's allocators (numpy arrays included) during fn()."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.backend
def test_memory_does_not_grow_with_length_or_channels(codec, notes, tmp_path, small_blocks):
    peaks = {}
    for name, seconds, channels in [("short", 8.0, 1), ("long", 40.0, 1), ("wide", 8.0, 16)]:
        src = tmp_path / f"{name}.wav"
        sf.write(src, _clip(notes, seconds, 44100, channels), 44100, subtype="PCM_16")
        vqz = tmp_path / f"{name}.vqz"
        compress(src, vqz, model=codec, progress=False)  # compile once, outside the trace
        enc = _peak_traced(lambda: compress(src, vqz, model=codec, progress=False))
        dec = _peak_traced(lambda: decompress(vqz, tmp_path / f"{name}.wav", model=codec,
                                              iterations=1, progress=False))
        peaks[name] = (enc, dec)
    # Whole-file processing would hold 40 s x 44.1 kHz float32 (7 MB) and more;
    # streaming holds one chunk and one block whatever the length or width.
    for name in ("long", "wide"):
        for phase in (0, 1):
            assert peaks[name][phase] < peaks["short"][phase] + 1_000_000, peaks
