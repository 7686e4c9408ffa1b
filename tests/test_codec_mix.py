"""The codec's training mix: real LMMS samples, espeak-ng speech and soundfont notes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from vqkeras.data import codec_mix, speech_text
from vqkeras.data.codec_mix import (
    CLIP_SAMPLES,
    SILENCE_RMS,
    MixSizes,
    MixSources,
    build_mix,
    check_sources,
    cut_pieces,
    file_split,
    load_mix,
    note_clips,
    real_audio_clips,
    speech_clips,
)
from vqkeras.errors import DatasetError

LMMS = MixSources().lmms_root

needs_lmms = pytest.mark.skipif(not LMMS.is_dir(),
                                reason=f"Debian's lmms-common is not installed ({LMMS})")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="Debian's espeak-ng is not installed")


def assert_clips_ok(clips) -> None:
    assert clips
    for clip in clips:
        assert clip.audio.shape == (CLIP_SAMPLES,) and clip.audio.dtype == np.float32
        assert np.max(np.abs(clip.audio)) == pytest.approx(1.0, abs=1e-6)  # peak-normalised
        assert np.sqrt(np.mean(clip.audio.astype(np.float64) ** 2)) >= SILENCE_RMS
        assert 0 < clip.seconds <= 4.0


def lmms_clips(split: str, limit: int):
    return real_audio_clips("samples", split, limit, root=LMMS, package="lmms-common",
                            max_pieces=4)


@needs_lmms
def test_file_split_holds_out_a_stable_tenth_of_real_files():
    rel = [p.relative_to(LMMS).as_posix() for p in sorted(LMMS.rglob("*"))
           if p.suffix in codec_mix.AUDIO_SUFFIXES]
    first = [file_split(r) for r in rel]
    assert first == [file_split(r) for r in reversed(rel)][::-1]  # order-independent
    share = first.count("test") / len(first)
    assert 0.05 < share < 0.2, share


@needs_lmms
def test_lmms_clips_are_real_normalised_and_split_by_file():
    train, test = lmms_clips("train", 12), lmms_clips("test", 6)
    assert_clips_ok(train)
    assert_clips_ok(test)
    assert not {c.source for c in train} & {c.source for c in test}
    assert all(file_split(c.source) == "test" for c in test)
    again = lmms_clips("train", 12)  # deterministic: same files, pieces and samples
    assert [(c.source, c.offset_s) for c in again] == [(c.source, c.offset_s) for c in train]
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(again, train))


@needs_lmms
def test_long_files_are_cut_and_short_ones_zero_padded():
    long = codec_mix._read(LMMS / "instruments" / "church_organ01.ogg")
    short = codec_mix._read(LMMS / "drums" / "kick01.ogg")
    assert long is not None and long.size > 2 * CLIP_SAMPLES
    pieces = list(cut_pieces(long, max_pieces=4))
    assert [k for k, _, _ in pieces][:2] == [0, 1]
    assert pieces[0][2] == 4.0  # a full 4-s piece of the file
    np.testing.assert_allclose(pieces[1][1] * np.max(np.abs(long[CLIP_SAMPLES:2 * CLIP_SAMPLES])),
                               long[CLIP_SAMPLES:2 * CLIP_SAMPLES], atol=1e-6)
    (_, clip, seconds), = list(cut_pieces(short, max_pieces=4))
    assert seconds == pytest.approx(short.size / 16000)
    assert not np.any(clip[short.size:])  # zero padding after the hit


def test_silent_and_tail_pieces_are_dropped():
    tone = np.sin(np.arange(CLIP_SAMPLES) * 0.05).astype(np.float32)
    audio = np.concatenate([tone, 1e-3 * tone, np.zeros(CLIP_SAMPLES, np.float32)])
    assert [k for k, _, _ in cut_pieces(audio, 3)] == [0]  # -60 dB tail and silence go
    assert list(cut_pieces(np.zeros(10, np.float32), 1)) == []


@needs_espeak
def test_speech_clips_use_separate_sentences_for_test():
    for lang in speech_text.TRAIN:
        assert not set(speech_text.TRAIN[lang]) & set(speech_text.TEST[lang]), lang
    train, test = speech_clips("train", 3), speech_clips("test", 3)
    assert_clips_ok(train)
    assert_clips_ok(test)
    all_train = {s for sents in speech_text.TRAIN.values() for s in sents}
    all_test = {s for sents in speech_text.TEST.values() for s in sents}
    assert {c.source.split(":", 3)[3] for c in train} <= all_train
    assert {c.source.split(":", 3)[3] for c in test} <= all_test
    assert [c.source for c in speech_clips("train", 3)] == [c.source for c in train]


def test_notes_come_from_the_renders_train_instruments(timgm_soundfont):
    from vqkeras.data.gm_families import GM_PROGRAMS
    from vqkeras.data.render import _split_instruments

    held_out = {p for p, s in _split_instruments(sorted(GM_PROGRAMS), 0).items() if s != "train"}
    programs = codec_mix.note_programs()
    assert not set(programs["train"]) & held_out
    assert set(programs["test"]) <= held_out
    train = note_clips("train", 2, soundfonts=("TimGM6mb",))
    test = note_clips("test", 2, soundfonts=("TimGM6mb",))
    assert_clips_ok(train + test)
    program = lambda c: int(c.source.split("program=")[1].split(":")[0])  # noqa: E731
    assert {program(c) for c in train} <= set(programs["train"])
    assert {program(c) for c in test} <= set(programs["test"])


@pytest.mark.parametrize("family, field, value, package", [
    ("samples", "lmms_root", "no-such-dir", "lmms-common"),
    ("drums", "hydrogen_root", "no-such-dir", "hydrogen-drumkits"),
    ("speech", "espeak", "no-such-espeak-ng", "espeak-ng"),
])
def test_a_missing_source_names_its_package(tmp_path, family, field, value, package):
    if field.endswith("root"):
        value = tmp_path / value
    sources = MixSources(**{field: value})
    sizes = MixSizes(train={family: 1}, test={})
    with pytest.raises(DatasetError, match=f"apt-get install {package}"):
        check_sources(sources, sizes)
    with pytest.raises(DatasetError, match=package):
        build_mix(tmp_path / "mix", sizes=sizes, sources=sources, progress=False)
    assert not (tmp_path / "mix").exists()  # nothing half-written


def test_a_missing_fluid_soundfont_names_its_package(monkeypatch, tmp_path):
    import vqkeras.data.render as render

    monkeypatch.setattr(render, "FLUID_SOUNDFONT", tmp_path / "FluidR3_GM.sf2")
    with pytest.raises(DatasetError, match="fluid-soundfont-gm"):
        check_sources(MixSources(), MixSizes(train={"notes": 1}, test={}))


def small_sizes() -> MixSizes:
    return MixSizes(train={"notes": 2, "samples": 3, "speech": 2},
                    test={"notes": 1, "samples": 2, "speech": 1})


@needs_lmms
@needs_espeak
def test_build_mix_writes_clips_and_manifest(tmp_path):
    sources = MixSources(soundfonts=("TimGM6mb",))
    out = build_mix(tmp_path / "mix", sizes=small_sizes(), sources=sources, progress=False)
    rows = codec_mix.read_manifest(out)
    assert {r["split"] for r in rows} == {"train", "test"}
    assert all((out / r["path"]).is_file() for r in rows)
    for split in ("train", "test"):
        waves, split_rows = load_mix(out, split)
        assert waves.shape == (len(split_rows), CLIP_SAMPLES)
        np.testing.assert_allclose(np.max(np.abs(waves), axis=1), 1.0, atol=1e-6)
    by_split = {s: {r["source"] for r in rows if r["split"] == s} for s in ("train", "test")}
    assert not by_split["train"] & by_split["test"]
    summary = json.loads((out / codec_mix.MARKER).read_text())["summary"]
    assert summary["samples"]["train"]["clips"] == 3 and summary["speech"]["test"]["clips"] == 1
    # Deterministic: a second build elsewhere gives the same manifest and samples.
    other = build_mix(tmp_path / "again", sizes=small_sizes(), sources=sources, progress=False)
    assert (other / "manifest.csv").read_text() == (out / "manifest.csv").read_text()
    assert np.array_equal(load_mix(other, "train")[0], load_mix(out, "train")[0])
    # Same parameters reuse the folder; other parameters and foreign folders are refused.
    assert build_mix(out, sizes=small_sizes(), sources=sources, progress=False) == out
    with pytest.raises(DatasetError, match="other parameters"):
        build_mix(out, sources=sources, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not written by"):
        build_mix(foreign, sizes=small_sizes(), sources=sources, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "foreign", "mix"]


def test_load_mix_names_a_missing_mix(tmp_path):
    with pytest.raises(DatasetError, match="vqkeras data mix --out"):
        load_mix(tmp_path, "train")


def test_cli_names_the_missing_package_in_one_line(tmp_path, monkeypatch, capsys):
    import functools

    from vqkeras.cli import main

    monkeypatch.setattr(codec_mix, "MixSources",
                        functools.partial(MixSources, lmms_root=tmp_path / "no-lmms"))
    assert main(["data", "mix", "--out", str(tmp_path / "mix"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    # One line naming every missing source (here at least LMMS; others may be missing too).
    assert len(err.splitlines()) == 1 and "apt-get install lmms-common" in err, err
    assert not (tmp_path / "mix").exists()
