"""The codec end to end with the shipped model: round trips, bitrates, damaged files, CLI."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from vqkeras.codec import compress, container, decompress, entropy
from vqkeras.codec.codec_model import CodecInfo, load_codec_model
from vqkeras.errors import CodecFormatError

ITERATIONS = 64  # phase reconstruction steps in tests (~0.1 s a window once compiled)


@pytest.fixture(scope="session")
def codec():
    # The shipped model (vqkeras/assets) is part of the package: no skip if missing.
    return load_codec_model()


@pytest.fixture(scope="session")
def note_wav(tmp_path_factory, notes) -> Path:
    from vqkeras.audio_io import write_wav

    path = tmp_path_factory.mktemp("codec") / "note.wav"
    write_wav(path, notes[0], 16000)
    return path


@pytest.fixture(scope="session")
def note_vqz(tmp_path_factory, note_wav, codec) -> Path:
    return compress(note_wav, tmp_path_factory.mktemp("codec") / "note.vqz", model=codec,
                    progress=False)


def test_bundle_is_consistent(codec):
    info = codec.info
    assert info.num_stages >= 2 and info.num_embeddings >= 16
    assert np.asarray(info.counts).min() >= 1  # add-one smoothing: every code encodable
    rates = [info.bitrate_kbps[str(s)] for s in range(1, info.num_stages + 1)]
    assert rates == sorted(rates) and rates[-1] <= 8.0
    # Loading checks the weights hash against codec.json and the grid against the model.
    assert tuple(codec.keras_model.latent_shape) == info.grid


@pytest.mark.backend
def test_round_trip_note(codec, note_wav, note_vqz, notes, tmp_path):
    import soundfile as sf

    from vqkeras.metrics import log_spectral_distance

    size = note_vqz.stat().st_size
    assert size < 4.0 * 8000 / 8  # under 8 kbit/s for a 4-s note
    out = decompress(note_vqz, tmp_path / "out.wav", model=codec, iterations=ITERATIONS,
                     progress=False)
    audio, rate = sf.read(out, dtype="float32")
    assert rate == 16000 and audio.shape == (64000,)
    lsd = log_spectral_distance(notes[0], audio)
    silence_lsd = log_spectral_distance(notes[0], np.zeros_like(notes[0]))
    # Measured 7.1 dB (silence: 9.4 dB; LSD floors at 80 dB below the peak, so
    # silence is a hard reference for a decaying piano note). Opus at 6 kbit/s
    # scores 10-12 dB on such notes (benchmarks/rate_distortion.py).
    assert lsd < min(8.5, 0.85 * silence_lsd), lsd


def test_stereo_44k_odd_length_round_trip(codec, notes, tmp_path):
    import soundfile as sf
    import soxr

    n = 286_651  # 6.5 s at 44.1 kHz plus one sample: odd, two windows at 16 kHz
    left = soxr.resample(np.concatenate([notes[1], notes[2]]), 16000, 44100)[:n]
    stereo = np.stack([left, 0.5 * left[::-1]], axis=1).astype("float32")
    src = tmp_path / "stereo.wav"
    sf.write(src, stereo, 44100, subtype="PCM_16")
    vqz = compress(src, tmp_path / "stereo.vqz", model=codec, progress=False)
    header, gains, payload = container.unpack(vqz.read_bytes())
    assert (header.sample_rate, header.channels, header.num_samples) == (44100, 2, n)
    assert header.num_windows == 2 and gains.shape == (2,)
    out = decompress(vqz, tmp_path / "stereo_out.wav", model=codec, iterations=ITERATIONS,
                     progress=False)
    audio, rate = sf.read(out, dtype="float32")
    assert rate == 44100 and audio.shape == (n, 2)
    assert np.abs(audio).max() > 0.01


def test_bitrate_selects_stages_and_file_size_grows(codec, note_wav, tmp_path):
    info = codec.info
    sizes, stages = [], []
    for s in range(1, info.num_stages + 1):
        path = compress(note_wav, tmp_path / f"s{s}.vqz", model=codec,
                        bitrate=info.bitrate_kbps[str(s)] + 1e-3, progress=False)
        stages.append(container.unpack(path.read_bytes())[0].num_stages)
        sizes.append(path.stat().st_size)
    assert stages == list(range(1, info.num_stages + 1))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    # Below the one-stage rate: still one stage (the smallest).
    low = compress(note_wav, tmp_path / "low.vqz", model=codec, bitrate=0.01, progress=False)
    assert container.unpack(low.read_bytes())[0].num_stages == 1
    # A one-stage file decodes with the four-stage model (RVQ prefix).
    out = decompress(low, tmp_path / "low.wav", model=codec, iterations=ITERATIONS, progress=False)
    assert out.stat().st_size == 44 + 2 * 64000
    with pytest.raises(ValueError, match="bitrate"):
        compress(note_wav, tmp_path / "bad.vqz", model=codec, bitrate=-3, progress=False)


def test_entropy_coding_beats_fixed_width_on_real_codes(codec, notes):
    from vqkeras.codec.pipeline import encode_windows

    info = codec.info
    peaks = np.abs(notes).max(axis=1, keepdims=True)
    codes = encode_windows(codec, notes / peaks, info.num_stages)
    coded = 8 * len(entropy.encode_indices(codes, info.counts_array))
    fixed = entropy.fixed_width_bits(codes.size, info.num_embeddings)
    assert coded < fixed, (coded, fixed)


def _forge(data: bytes, offset: int, value: bytes) -> bytes:
    out = bytearray(data)
    out[offset:offset + len(value)] = value
    out[-4:] = struct.pack("<I", zlib.crc32(bytes(out[:-4])))
    return bytes(out)


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[: len(d) // 2], "truncated"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 0x5A]), "CRC32"),
    (lambda d: b"RIFF" + d[4:], "magic"),
    (lambda d: _forge(d, 4, struct.pack("<H", 2)), "version 2"),
    (lambda d: _forge(d, 8, bytes(16)), "file was made with model 0000"),
    (lambda d: d[:60] + bytes([d[60] ^ 1]) + d[61:], "CRC32"),
])
def test_damaged_files_raise_and_leave_no_output(codec, note_vqz, tmp_path, damage, message):
    bad = tmp_path / "bad.vqz"
    bad.write_bytes(damage(note_vqz.read_bytes()))
    out = tmp_path / "out.wav"
    with pytest.raises(CodecFormatError, match=message) as err:
        decompress(bad, out, model=codec, iterations=1, progress=False)
    assert "\n" not in str(err.value)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]  # no temporary file left either


def test_cli_errors_exit_2_with_one_line(note_vqz, tmp_path, capsys):
    from vqkeras.cli import main

    bad = tmp_path / "bad.vqz"
    bad.write_bytes(note_vqz.read_bytes()[:-3])
    assert main(["decompress", str(bad), str(tmp_path / "o.wav")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vqkeras decompress: error:") and "truncated" in err
    assert len(err.splitlines()) == 1
    assert main(["compress", str(tmp_path / "missing.wav"), str(tmp_path / "o.vqz")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists() and not (tmp_path / "o.vqz").exists()


def test_stages_for_bitrate_rules():
    info = CodecInfo(spectrogram=dict(sample_rate=16000, frame_length=512, frame_step=128,
                                      duration=4.0, dynamic_range_db=100.0),
                     time_multiple=16, grid=(31, 16), num_stages=3, num_embeddings=4,
                     counts=[[1] * 4] * 3, weights_sha256="0" * 64,
                     bitrate_kbps={"1": 0.8, "2": 1.6, "3": 2.4})
    assert info.stages_for_bitrate(None) == 3
    assert info.stages_for_bitrate(2.0) == 2
    assert info.stages_for_bitrate(0.5) == 1
    assert info.stages_for_bitrate(100) == 3
    with pytest.raises(ValueError, match="bitrate=0"):
        info.stages_for_bitrate(0)


@pytest.mark.slow
def test_train_default_model_writes_a_working_bundle(rendered_dataset, notes, tmp_path):
    import yaml

    from vqkeras.codec.default_model import DEFAULT_CONFIG, train_default_model

    # The shipped recipe, shrunk to seconds: same code path, tiny network.
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    cfg["dataset"].update(max_train=8, max_valid=4)
    cfg["model"].update(num_hiddens=8, num_residual_hiddens=4, num_residual_layers=1,
                        strides=[[4, 4], [4, 4]], embedding_dim=4, num_embeddings=16,
                        num_stages=2)
    cfg["training"].update(epochs=1, batch_size=4, verbose=0)
    cfg["phase_reconstruction"]["n_iter"] = ITERATIONS
    bundle = train_default_model(rendered_dataset, tmp_path / "bundle", config=cfg)
    codec = load_codec_model(bundle)
    info = codec.info
    assert info.grid == (31, 16) and np.asarray(info.counts).shape == (2, 16)
    assert 0 < info.bitrate_kbps["1"] <= info.bitrate_kbps["2"]
    # The saved weights match the recorded hash (checked on load), and the bundle codes audio.
    from vqkeras.audio_io import write_wav

    write_wav(tmp_path / "n.wav", notes[3], 16000)
    vqz = compress(tmp_path / "n.wav", tmp_path / "n.vqz", model=codec, progress=False)
    out = decompress(vqz, tmp_path / "n_out.wav", model=bundle, progress=False)
    assert out.stat().st_size > 64000 * 2
    # A file made with this model is refused by the shipped one, with both ids named.
    with pytest.raises(CodecFormatError, match=f"made with model {info.model_id.hex()}"):
        decompress(vqz, tmp_path / "x.wav", progress=False)
