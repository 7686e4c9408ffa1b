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
    mix_families,
    recorded_speech_files,
    speech_clips,
)
from vqkeras.errors import DatasetError

LMMS = MixSources().lmms_root
FILLETS = MixSources().fillets_root

needs_lmms = pytest.mark.skipif(not LMMS.is_dir(),
                                reason=f"Debian's lmms-common is not installed ({LMMS})")
needs_fillets = pytest.mark.skipif(
    not all(any(FILLETS.glob(f"*/{lang}/*.ogg")) for lang in ("cs", "nl")),
    reason=f"Debian's fillets-ng-data-cs and fillets-ng-data-nl are not installed ({FILLETS})")
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


def _fake_dialogue(root, names) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # 5 s of noise at 22.05 kHz, stereo like the Dutch files: two 4-s pieces.
        sf.write(path, 0.1 * rng.standard_normal((5 * 22050, 2)), 22050, format="OGG",
                 subtype="VORBIS")


def test_recorded_speech_is_the_dialogue_of_the_chosen_languages(tmp_path):
    names = [f"level{k}/{lang}/x-m-line{k}.ogg" for k in range(12) for lang in ("cs", "nl")]
    names += ["share/border/cs/sp-shout.ogg", "level0/en/x-m-line0.ogg", "music/cs.ogg"]
    _fake_dialogue(tmp_path, names)
    (tmp_path / "level0" / "cs" / "readme.txt").write_text("not audio")
    files = recorded_speech_files(tmp_path, ("cs", "nl"))
    rel = [p.relative_to(tmp_path).as_posix() for p in files]
    assert rel == sorted(n for n in names if "/en/" not in n and n != "music/cs.ogg")
    assert recorded_speech_files(tmp_path, ("nl",)) == [p for p in files if p.parent.name == "nl"]
    clips = {split: real_audio_clips("speech-recorded", split, 100, root=tmp_path, package="x",
                                     max_pieces=2, files=files) for split in ("train", "test")}
    for split, chosen in clips.items():
        assert_clips_ok(chosen)
        assert {c.source for c in chosen} == {r for r in rel if file_split(r) == split}
        assert {c.offset_s for c in chosen} == {0.0, 4.0}
    with pytest.raises(ValueError, match="languages"):
        recorded_speech_files(tmp_path, ("en",))


def test_missing_recorded_speech_names_its_packages(tmp_path):
    _fake_dialogue(tmp_path, ["level0/cs/x-m-a.ogg"])
    sizes = MixSizes(train={"speech-recorded": 1}, test={})
    with pytest.raises(DatasetError, match="apt-get install fillets-ng-data-nl") as err:
        check_sources(MixSources(fillets_root=tmp_path), sizes)
    assert "fillets-ng-data-cs" not in str(err.value)
    with pytest.raises(DatasetError, match="fillets-ng-data-cs.*fillets-ng-data-nl"):
        check_sources(MixSources(fillets_root=tmp_path / "none"), sizes)
    check_sources(MixSources(fillets_root=tmp_path, fillets_languages=("cs",)), sizes)


@needs_fillets
def test_recorded_speech_clips_are_real_and_split_by_file():
    train = real_audio_clips("speech-recorded", "train", 3, root=FILLETS, package="x",
                             max_pieces=2, files=recorded_speech_files(FILLETS, ("cs", "nl")))
    test = real_audio_clips("speech-recorded", "test", 3, root=FILLETS, package="x",
                            max_pieces=2, files=recorded_speech_files(FILLETS, ("cs", "nl")))
    assert_clips_ok(train + test)
    assert all(file_split(c.source) == "train" for c in train)
    assert all(file_split(c.source) == "test" for c in test)


@pytest.mark.parametrize("family, field, value, package", [
    ("samples", "lmms_root", "no-such-dir", "lmms-common"),
    ("drums", "hydrogen_root", "no-such-dir", "hydrogen-drumkits"),
    ("speech", "espeak", "no-such-espeak-ng", "espeak-ng"),
    ("speech-recorded", "fillets_root", "no-such-dir", "fillets-ng-data-cs"),
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


#: The marker parameters of the four-family mix as written before speech-recorded
#: existed (`vqkeras data mix`'s defaults): such folders must still be recognised.
FOUR_FAMILY_PARAMETERS = {
    "format_version": 1, "seed": 0, "sample_rate": 16000, "clip_seconds": 4.0,
    "test_percent": 12, "tail_db": -40.0,
    "sizes": {"train": {"notes": 1000, "drums": 500, "samples": 400, "speech": 625},
              "test": {"notes": 64, "drums": 48, "samples": 48, "speech": 48},
              "max_pieces": {"drums": 2, "samples": 4, "speech": 2}},
    "sources": {"soundfonts": ["FluidR3_GM", "TimGM6mb"],
                "hydrogen_root": "/usr/share/hydrogen/data/drumkits",
                "lmms_root": "/usr/share/lmms/samples", "espeak": "espeak-ng"}}


def test_the_four_family_mix_keeps_its_old_parameters():
    four = MixSizes().only(codec_mix.SHIPPED_FAMILIES)
    assert not four.wanted("speech-recorded") and four.wanted("speech")
    assert codec_mix._parameters(four, MixSources(), 0) == FOUR_FAMILY_PARAMETERS
    five = codec_mix._parameters(MixSizes(), MixSources(), 0)
    assert five["sizes"]["train"]["speech-recorded"] == 500
    assert five["sources"]["fillets_languages"] == ["cs", "nl"]
    with pytest.raises(ValueError, match="families"):
        MixSizes().only(["notes", "birdsong"])


def test_a_four_family_folder_is_reused_and_loads(tmp_path, caplog):
    sources = MixSources(soundfonts=("TimGM6mb",))
    old_sizes = MixSizes(train={"notes": 2}, test={"notes": 1})
    out = build_mix(tmp_path / "mix", sizes=old_sizes, sources=sources, progress=False)
    # No folder or summary entry for a family that was not asked for.
    assert sorted(p.name for p in (out / "test").iterdir()) == ["notes"]
    summary = json.loads((out / codec_mix.MARKER).read_text())["summary"]
    assert list(summary) == ["notes"]
    marker = (out / codec_mix.MARKER).read_text()
    # Asking for the same mix plus speech-recorded keeps the folder as it is (with
    # a warning): its families are the clips a fresh build would write for them.
    with_speech = MixSizes(train={"notes": 2, "speech-recorded": 1}, test={"notes": 1})
    with caplog.at_level("WARNING", logger="vqkeras.data.codec_mix"):
        assert build_mix(out, sizes=with_speech, sources=sources, progress=False) == out
    assert "four-family mix" in caplog.text and "--overwrite" in caplog.text
    assert (out / codec_mix.MARKER).read_text() == marker
    with pytest.raises(DatasetError, match="other parameters"):   # a different mix still fails
        build_mix(out, sizes=MixSizes(train={"notes": 3}, test={"notes": 1}), sources=sources,
                  progress=False)
    assert mix_families(out) == ["notes"]
    waves, rows = load_mix(out, "train")               # every family by default: no crash
    assert len(rows) == 2 and waves.shape == (2, CLIP_SAMPLES)
    with pytest.raises(DatasetError, match="holds notes"):
        load_mix(out, "test", families=["speech-recorded"])


def test_cli_families_picks_the_mix(monkeypatch, tmp_path, capsys):
    from vqkeras.cli import main

    built = {}

    def fake_build(out, sizes=None, **kwargs):
        built["sizes"] = sizes
        return out

    monkeypatch.setattr(codec_mix, "build_mix", fake_build)
    assert main(["data", "mix", "--out", str(tmp_path / "m"), "-q",
                 "--families", "notes,drums,samples,speech"]) == 0
    assert built["sizes"] == MixSizes().only(codec_mix.SHIPPED_FAMILIES)
    assert main(["data", "mix", "--out", str(tmp_path / "m"), "--families", "notes,birdsong"]) == 2
    assert "birdsong" in capsys.readouterr().err
