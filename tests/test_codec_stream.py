"""Streaming encode and decode: block-by-block I/O gives the same files, in bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import soxr

from vqkeras.codec import compress, decompress, pipeline, stream
from vqkeras.codec.codec_model import load_codec_model

ITERATIONS = 8


@pytest.fixture(scope="module")
def codec():
    return load_codec_model()


@pytest.fixture
def small_blocks(monkeypatch):
    """One window per network call and 1000-sample I/O blocks: many blocks per window."""
    monkeypatch.setattr(pipeline, "BATCH_WINDOWS", 1)
    monkeypatch.setattr(stream, "BLOCK_VALUES", 1000)


def _clip(notes, seconds: float, rate: int = 44100, channels: int = 2) -> np.ndarray:
    """Real notes end to end, resampled to ``rate``, each channel at its own level."""
    mono = np.concatenate([notes[i % len(notes)] for i in range(int(np.ceil(seconds / 4)))])
    mono = soxr.resample(mono, 16000, rate)[:int(seconds * rate) + 7]  # odd length
    return np.stack([mono * (0.9 - 0.2 * c) for c in range(channels)], axis=1).astype("float32")


def test_read_windows_matches_reading_the_whole_file(notes, tmp_path, small_blocks):
    from vqkeras.audio_io import read_wav

    path = tmp_path / "in.wav"
    sf.write(path, _clip(notes, 9.0, 44100, 3), 44100, subtype="FLOAT")
    whole = read_wav(path, sample_rate=16000, mono=True)
    length, n = pipeline.expected_windows(pipeline._as_model(None).info, 44100,
                                          sf.info(str(path)).frames)
    windows = np.stack(list(stream.read_windows(path, 16000, 64000, length, n)))
    assert windows.shape == (n, 64000) == (3, 64000)
    expected = np.zeros(n * 64000, np.float32)
    expected[:length] = whole[:length]
    np.testing.assert_allclose(windows.reshape(-1), expected, atol=2e-4)


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
    monkeypatch.setattr(pipeline, "BATCH_WINDOWS", 1)
    monkeypatch.setattr(stream, "BLOCK_VALUES", 1000)
    small = compress(src, tmp_path / "small.vqz", model=codec, progress=False)
    assert small.read_bytes() == big.read_bytes()
    decompress(small, tmp_path / "small.wav", model=codec, iterations=ITERATIONS, progress=False)
    a, rate = sf.read(tmp_path / "big.wav", dtype="float32")
    b, _ = sf.read(tmp_path / "small.wav", dtype="float32")
    assert rate == 44100 and a.shape == b.shape == (sf.info(str(src)).frames, 2)
    np.testing.assert_allclose(a, b, atol=2e-4)


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
    # streaming holds one window and one block whatever the length or width.
    for name in ("long", "wide"):
        for phase in (0, 1):
            assert peaks[name][phase] < peaks["short"][phase] + 1_000_000, peaks
