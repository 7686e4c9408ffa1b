"""`vqkeras compress` / `decompress` on JAX, TensorFlow and torch: the same bytes, decodable anywhere.

Each backend runs in its own process (the command line, as a user runs it), so
this file runs once, from the JAX session, and covers all three.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("jax", "tensorflow", "torch")


def _vqkeras(backend: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "vqkeras", "--backend", backend, *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{backend}: {proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_every_backend_writes_the_same_file_and_decodes_it(notes, tmp_path):
    import soundfile as sf

    from vqkeras.audio_io import write_wav
    from vqkeras.metrics import log_spectral_distance

    # A stereo pair of real notes at 44.1 kHz: resampling, mid/side and two signals.
    left, right = notes[0], notes[2]
    wav = tmp_path / "pair.wav"
    import soxr

    write_wav(wav, soxr.resample(np.stack([left, right], axis=1), 16000, 44100), 44100)
    files, decoded = {}, {}
    for backend in BACKENDS:
        files[backend] = tmp_path / f"{backend}.vqz"
        _vqkeras(backend, "compress", wav, files[backend])
        decoded[backend] = tmp_path / f"{backend}.wav"
        # Decode the JAX-written file: bytes are checked equal below, so this is any backend's file.
        _vqkeras(backend, "decompress", tmp_path / "jax.vqz", decoded[backend], "--iterations", 32)
    reference = files["jax"].read_bytes()
    for backend in BACKENDS:
        assert files[backend].read_bytes() == reference, f"{backend} wrote other bytes than jax"
    audio = {b: sf.read(decoded[b], dtype="float32") for b in BACKENDS}
    for backend, (samples, rate) in audio.items():
        assert rate == 44100 and samples.shape == audio["jax"][0].shape
        # The decoded sound is the input's, on every backend: well under silence's distance.
        for channel, source in enumerate((left, right)):
            got = soxr.resample(samples[:, channel], 44100, 16000)[:len(source)]
            lsd = log_spectral_distance(source, got)
            assert lsd < 0.8 * log_spectral_distance(source, np.zeros_like(source)), (backend, channel, lsd)
