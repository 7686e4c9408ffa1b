"""The context model of the entropy coder (format version 4), its bundle files, and the
shipped model's upgrade: version-3 files of the model it replaced keep decoding."""

from __future__ import annotations

import dataclasses
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from vqkeras.codec import compress, container, decompress, entropy
from vqkeras.codec.codec_model import (CodecInfo, CodecModelError, default_model_dir,
                                       load_codec_model, model_for_file)
from vqkeras.errors import CodecFormatError

FIXTURE_V3 = Path(__file__).parent / "data" / "tone_v3.vqz"
# tone_v3.vqz: 0.5 s of a 440 Hz sine at half scale, 16 kHz mono, written by
# `vqkeras compress` at commit 8ac594c, i.e. by the shipped model before context
# tables (model 9882ebd998f1dd5e32f5416f404b4898, format version 3, 4 stages).
LEGACY_ID = bytes.fromhex("9882ebd998f1dd5e32f5416f404b4898")
ITERATIONS = 8


def _correlated_codes(rng, n=24, cells=31, width=16, stages=3, k=64):
    """Codes like a trained RVQ's: skewed, repeating along time, tied to the previous stage."""
    probs = [rng.dirichlet(np.full(k, 0.3)) for _ in range(stages)]
    perms = [rng.permutation(k) for _ in range(stages)]
    x = np.zeros((n, cells, width, stages), np.int32)
    for s in range(stages):
        for t in range(cells):
            fresh = rng.choice(k, size=(n, width), p=probs[s])
            if s:  # often a fixed function of the previous stage's code
                fresh = np.where(rng.random((n, width)) < 0.5, perms[s][x[:, t, :, s - 1]],
                                 fresh)
            if t:  # often the previous cell's code again
                fresh = np.where(rng.random((n, width)) < 0.6, x[:, t - 1, :, s], fresh)
            x[:, t, :, s] = fresh
    return x


def _tables(codes, k=64):
    return entropy.estimate_context_tables(codes, entropy.estimate_counts(codes, k))


@pytest.fixture(scope="module")
def correlated(rng_module):
    train, test = _correlated_codes(rng_module, n=48), _correlated_codes(rng_module, n=6)
    return _tables(train), test


@pytest.fixture(scope="module")
def rng_module():
    return np.random.default_rng(1)


@pytest.fixture(scope="module")
def shipped():
    return load_codec_model()


def test_round_trip_random_and_structured_codes(rng, correlated):
    tables, structured = correlated
    uniform = rng.integers(0, 64, size=(5, 7, 16, 3)).astype(np.int32)  # no structure at all
    for codes in [*structured[:3], *uniform, structured[0, :1], structured[1, ..., :1]]:
        payload = entropy.encode_context(codes, tables)
        assert len(payload) % 4 == 0
        np.testing.assert_array_equal(entropy.decode_context(payload, tables, codes.shape),
                                      codes)
        # The real coder is within a few bytes of the model's ideal code length.
        ideal = entropy.context_bits_per_stage(codes, tables).sum()
        assert abs(8 * len(payload) - ideal) <= 8 * 12, (ideal, len(payload))
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        entropy.encode_context(np.full((2, 16, 1), 64), tables)
    with pytest.raises(ValueError, match="4 stages, the context tables have 3"):
        entropy.encode_context(np.zeros((2, 16, 4), np.int32), tables)


def test_context_coding_saves_bits_on_correlated_codes(correlated):
    tables, codes = correlated
    static = entropy.static_bits_per_stage(codes, tables.counts)
    context = entropy.context_bits_per_stage(codes, tables)
    assert np.all(context < 0.8 * static), (context, static)
    coded_static = sum(len(entropy.encode_indices(c[None], tables.counts)) for c in codes)
    coded_context = sum(len(entropy.encode_context(c, tables)) for c in codes)
    assert coded_context < 0.75 * coded_static
    # Leading axes are independent sequences: the sum over clips, one at a time.
    np.testing.assert_allclose(context, sum(entropy.context_bits_per_stage(c, tables)
                                            for c in codes))


@pytest.mark.parametrize("damage, message", [
    (lambda p: p[:-4], "corrupt payload"),
    (lambda p: p + b"\0\0\0\0", "not the exact coding"),
    (lambda p: p + b"\0", "not a whole number of 32-bit words"),
    (lambda p: b"", "corrupt payload"),
])
def test_damaged_payload_is_a_format_error_naming_the_problem(correlated, damage, message):
    tables, codes = correlated
    payload = entropy.encode_context(codes[0], tables)
    with pytest.raises(CodecFormatError, match=message):
        entropy.decode_context(damage(payload), tables, codes[0].shape)


def test_flipped_bits_never_decode_silently_to_other_codes(rng, correlated):
    tables, codes = correlated
    payload = bytearray(entropy.encode_context(codes[1], tables))
    for _ in range(40):
        bad = bytearray(payload)
        bad[rng.integers(len(bad))] ^= 1 << int(rng.integers(8))
        try:
            decoded = entropy.decode_context(bytes(bad), tables, codes[1].shape)
        except CodecFormatError as err:
            assert "corrupt payload" in str(err) and "\n" not in str(err)
        else:  # only possible if the bytes are the exact coding of what they decode to
            assert entropy.encode_context(decoded, tables) == bytes(bad)
    with pytest.raises(CodecFormatError, match="4 stages, the context tables have 3"):
        entropy.decode_context(bytes(payload), tables, (31, 16, 4))


def test_digest_and_model_identity_follow_the_tables(correlated, shipped):
    tables, _ = correlated
    again = entropy.ContextTables(tables.counts, tables.prev_time.copy(), tables.prev_stage,
                                  tables.alpha_time, tables.alpha_stage)
    assert again.digest() == tables.digest()
    again.prev_time[0, 3, 5] += 1
    assert again.digest() != tables.digest()
    other = entropy.ContextTables(tables.counts, tables.prev_time, tables.prev_stage,
                                  [a * 2 for a in tables.alpha_time], tables.alpha_stage)
    assert other.digest() != tables.digest()
    # The shipped info: with its tables version 4, without them version 3 (the old id).
    info = shipped.info
    assert info.format_version == 4 and info.context["file"] == entropy.CONTEXT_FILE
    plain = CodecInfo.from_json(shipped.info.to_json())
    plain.context = None
    assert plain.format_version == 3 and plain.model_id not in (LEGACY_ID, info.model_id)
    # Without tables the identity is the weights' and static tables' alone: with the
    # legacy bundle's (not fine-tuned) weights it is the legacy id.
    plain.weights_sha256 = model_for_file(shipped, LEGACY_ID).info.weights_sha256
    assert plain.model_id == LEGACY_ID
    fitted = CodecInfo.from_json(plain.to_json())
    altered = entropy.ContextTables(info.counts_array, info.context_tables.prev_time.copy(),
                                    info.context_tables.prev_stage, info.context_tables.alpha_time,
                                    info.context_tables.alpha_stage)
    altered.prev_time[1, 0, 0] += 1
    fitted.set_context_tables(altered)
    assert fitted.model_id not in (info.model_id, LEGACY_ID)
    with pytest.raises(CodecModelError, match="context must be"):
        CodecInfo.from_json(info.to_json().replace(info.context["sha256"], "abc"))


def _bundle_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    folder.mkdir()
    for f in default_model_dir().iterdir():
        if f.is_file():
            shutil.copy2(f, folder / f.name)
    return folder


def test_missing_or_altered_context_file_is_a_one_line_model_error(shipped, tmp_path, capsys):
    from vqkeras.cli import main

    folder = _bundle_copy(tmp_path)
    tables = shipped.info.context_tables
    vqz = tmp_path / "tone.vqz"
    data = FIXTURE_V3.read_bytes()
    header, gains, loudness, payloads = container.unpack(data)
    indices = entropy.decode_indices(payloads[0], load_codec_model(
        default_model_dir() / "legacy" / LEGACY_ID.hex()).info.counts_array,
        (header.num_cells, header.grid_width, header.stages[0]))
    v4 = dataclasses.replace(header, model_id=shipped.info.model_id, version=4)
    vqz.write_bytes(container.pack(v4, gains, loudness,
                                   [entropy.encode_context(indices, tables)]))
    altered = entropy.ContextTables(tables.counts, tables.prev_time.copy(), tables.prev_stage,
                                    tables.alpha_time, tables.alpha_stage)
    altered.prev_time[0, 0, 0] += 1
    cases = [("missing", lambda p: p.unlink(), "context tables) is missing"),
             ("altered", lambda p: altered.save(p), "does not match the digest"),
             ("torn", lambda p: p.write_bytes(p.read_bytes()[:1000]), "does not load")]
    for name, damage, message in cases:
        target = folder / entropy.CONTEXT_FILE
        shutil.copy2(default_model_dir() / entropy.CONTEXT_FILE, target)
        damage(target)
        with pytest.raises(CodecModelError, match=re.escape(message)) as err:
            _ = load_codec_model(folder).info.context_tables
        assert "\n" not in str(err.value)
        # Through the command line: one line, exit 2, nothing written.
        out = tmp_path / f"{name}.wav"
        assert main(["decompress", str(vqz), str(out), "--model", str(folder)]) == 2, name
        line = capsys.readouterr().err.strip()
        assert message in line and len(line.splitlines()) == 1
        assert not out.exists()


@pytest.mark.backend
def test_old_shipped_model_files_decode_through_the_legacy_bundle(shipped, tmp_path):
    import soundfile as sf

    header = container.unpack(FIXTURE_V3.read_bytes())[0]
    assert header.version == 3 and header.model_id == LEGACY_ID != shipped.info.model_id
    legacy = model_for_file(shipped, LEGACY_ID)
    assert legacy.info.model_id == LEGACY_ID and legacy.info.format_version == 3
    # The shipped decoder was fine-tuned from it with the encoder and codebooks frozen:
    # the same codes and static tables, other decoder weights.
    assert legacy.info.counts == shipped.info.counts
    assert legacy.info.weights_sha256 != shipped.info.weights_sha256
    out = decompress(FIXTURE_V3, tmp_path / "old.wav", iterations=ITERATIONS, progress=False)
    decoded, rate = sf.read(out)
    assert rate == 16000 and len(decoded) == 8000 and np.abs(decoded).max() > 0.05
    # Only the shipped model reaches back: a copy of it elsewhere refuses the file.
    with pytest.raises(CodecFormatError, match=f"made with model {LEGACY_ID.hex()}"):
        decompress(FIXTURE_V3, tmp_path / "x.wav", model=_bundle_copy(tmp_path),
                   progress=False)


@pytest.mark.backend
def test_shipped_model_writes_version_4_files_that_round_trip(shipped, tmp_path):
    import soundfile as sf

    from vqkeras.codec.unpack import read_vqz

    t = np.arange(24000) / 16000
    wav = tmp_path / "chirp.wav"
    sf.write(wav, (0.4 * np.sin(2 * np.pi * (300 + 400 * t) * t)).astype("float32"), 16000,
             subtype="FLOAT")
    vqz = compress(wav, tmp_path / "chirp.vqz", progress=False)
    header, _, _, indices = read_vqz(vqz.read_bytes(), shipped.info)
    assert header.version == 4 and header.model_id == shipped.info.model_id
    assert header.stages == (shipped.info.num_stages,)
    out = decompress(vqz, tmp_path / "chirp_out.wav", iterations=ITERATIONS, progress=False)
    decoded, _ = sf.read(out)
    assert len(decoded) == 24000 and np.abs(decoded).max() > 0.05
    # Version 4 codes the same indices in fewer bytes than version 3 would.
    static = entropy.encode_payload(indices[0], shipped.info, 3)
    assert len(entropy.encode_payload(indices[0], shipped.info, 4)) < len(static)


def test_file_naming_an_unknown_model_fails_cleanly(tmp_path, capsys):
    from vqkeras.cli import main

    data = bytearray(FIXTURE_V3.read_bytes())
    data[8:24] = bytes(range(16))  # model id
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    forged = tmp_path / "other.vqz"
    forged.write_bytes(bytes(data))
    out = tmp_path / "other.wav"
    with pytest.raises(CodecFormatError, match=f"made with model {bytes(range(16)).hex()}, "
                                               f"this model is"):
        decompress(forged, out, progress=False)
    assert main(["decompress", str(forged), str(out)]) == 2
    line = capsys.readouterr().err.strip()
    assert "made with model 000102" in line and len(line.splitlines()) == 1
    assert not out.exists()


def test_container_writes_both_versions(correlated):
    fields = dict(model_id=bytes(16), sample_rate=16000, channels=1, num_samples=16000,
                  num_cells=8, num_segments=1, grid_width=16, stages=(1,))
    for version in (3, 4):
        data = container.pack(container.VQZHeader(**fields, version=version),
                              np.zeros((1, 1), np.uint8), np.zeros((1, 1), np.int8), [b"\0" * 4])
        assert container.unpack(data)[0].version == version
    with pytest.raises(ValueError, match="writes .vqz versions 3, 4"):
        container.pack(container.VQZHeader(**fields, version=5), np.zeros((1, 1), np.uint8),
                       np.zeros((1, 1), np.int8), [b"\0" * 4])


def test_fit_context_writes_a_new_bundle_of_the_same_weights(shipped, tmp_path, capsys):
    from vqkeras.cli import main
    from vqkeras.codec.default_model import fit_context_model
    from vqkeras.data.codec_mix import MixSizes, MixSources, build_mix

    mix = build_mix(tmp_path / "mix", sizes=MixSizes(train={"notes": 6}, test={"notes": 3}),
                    sources=MixSources(soundfonts=("TimGM6mb",)), progress=False)
    bundle = fit_context_model(None, mix, tmp_path / "new", max_valid=3)
    new = load_codec_model(bundle)
    info = new.info
    assert sorted(f.name for f in bundle.iterdir()) == ["codec.json", "codec.keras",
                                                        "context.npz"]
    assert info.weights_sha256 == shipped.info.weights_sha256
    assert info.counts == shipped.info.counts and info.silence_codes == shipped.info.silence_codes
    assert info.format_version == 4 and info.model_id != shipped.info.model_id
    assert info.context_tables.prev_time[0].sum() == 6 * info.grid[0] * info.grid[1]
    rates = [info.bitrate_kbps[str(s)] for s in range(1, info.num_stages + 1)]
    assert rates == sorted(rates) and rates[0] > 0
    # The command line: an output folder in use, or no mix, is one line and exit 2.
    for argv, message in [(["--out", str(bundle)], "is not an empty folder"),
                          (["--out", str(tmp_path / "b2"), "--data", str(tmp_path)],
                           "not a codec mix")]:
        assert main(["codec", "fit-context", *argv]) == 2
        line = capsys.readouterr().err.strip()
        assert message in line and len(line.splitlines()) == 1
    assert not (tmp_path / "b2").exists()
