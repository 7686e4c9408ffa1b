"""Random WAV-like inputs through `vqkeras compress` and `vqkeras predict` (issue 9).

Odd rates, channel counts, sample formats and lengths, NaN/inf samples,
truncated files and damaged headers. The only outcomes allowed: exit code 0
with a valid output, or exit code 2 with one line on stderr and no file left
behind (no output, no temporary file). Few examples, so it takes seconds.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vqkeras.cli import main
from vqkeras.codec import container

RATES = st.one_of(st.sampled_from([1, 8, 4000, 11025, 16000, 44100, 96000, 768000, 1_000_000]),
                  st.integers(1, 200_000))
SUBTYPES = st.sampled_from(["PCM_16", "PCM_24", "PCM_U8", "FLOAT", "DOUBLE", "ULAW"])


@st.composite
def wav_like(draw) -> bytes:
    """Bytes of a WAV file, sometimes valid, sometimes bent or broken."""
    rate = draw(RATES)
    channels = draw(st.integers(1, 70))
    frames = draw(st.integers(0, 6000))
    # Keep the valid inputs short (compute time); a huge duration must be refused.
    assume(frames / rate <= 6.0 or frames / rate > container.MAX_DURATION_S)
    subtype = draw(SUBTYPES)
    seed = draw(st.integers(0, 2**16))
    audio = np.random.default_rng(seed).uniform(-1, 1, (frames, channels)).astype(np.float32)
    audio *= draw(st.sampled_from([0.0, 1e-6, 0.5, 1.0]))
    if frames and subtype in ("FLOAT", "DOUBLE") and draw(st.booleans()):
        audio[draw(st.integers(0, frames - 1)), 0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, subtype=subtype, format="WAV")
    data = bytearray(buffer.getvalue())
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip", "field"]))
    if damage == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif damage == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, min(len(data), 64) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    elif damage == "field":  # rate, channels or data size set to an extreme
        offset, fmt = draw(st.sampled_from([(24, "<I"), (22, "<H"), (40, "<I"), (34, "<H")]))
        if offset + struct.calcsize(fmt) <= len(data):
            value = draw(st.sampled_from([0, 1, 2**(8 * struct.calcsize(fmt)) - 1]))
            data[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(data)


def _check_outcome(rc: int, err: str, folder, out_name: str) -> None:
    assert rc in (0, 2), err
    left = sorted(p.name for p in folder.iterdir() if p.name != "in.wav")
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vqkeras") and "Traceback" not in err, err
        assert left == [], f"a failed command left {left}"
    else:
        assert left == [out_name], left


@settings(max_examples=14, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@given(data=wav_like())
def test_compress_random_wav_like_inputs(data, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "in.wav").write_bytes(data)
    rc = main(["compress", str(folder / "in.wav"), str(folder / "out.vqz")])
    _check_outcome(rc, capsys.readouterr().err, folder, "out.vqz")
    if rc == 0:
        header = container.unpack((folder / "out.vqz").read_bytes())[0]
        info = sf.info(str(folder / "in.wav"))
        assert (header.sample_rate, header.channels) == (info.samplerate, info.channels)
        assert header.num_samples == max(1, info.frames)


@pytest.mark.backend
@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@given(data=wav_like())
def test_predict_random_wav_like_inputs(data, tiny_run, tmp_path_factory, capsys):
    import keras

    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "in.wav").write_bytes(data)
    rc = main(["--backend", keras.backend.backend(), "predict", str(folder / "in.wav"), "-o",
               str(folder / "out.wav"), "--model", str(tiny_run[1]), "--iterations", "0"])
    _check_outcome(rc, capsys.readouterr().err, folder, "out.wav")
    if rc == 0:
        out = sf.info(str(folder / "out.wav"))
        assert out.samplerate == 16000 and out.channels == 1 and out.frames > 0
