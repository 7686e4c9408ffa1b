"""Soundfont rendering into NSynth's layout (real TimGM6mb notes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from vqkeras.data import render as render_mod
from vqkeras.data.gm_families import GM_PROGRAMS, NSYNTH_FAMILIES, gm_program
from vqkeras.data.render import MARKER, default_soundfont, render_dataset, render_note
from vqkeras.errors import DatasetError

NSYNTH_KEYS = {"note", "note_str", "instrument", "instrument_str", "pitch", "velocity", "sample_rate",
               "instrument_family", "instrument_family_str", "instrument_source",
               "instrument_source_str", "qualities", "qualities_str"}


def _f0_peak(wave: np.ndarray, sr: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(wave[: 2 * sr] * np.hanning(2 * sr)))
    return float(np.argmax(spectrum) * sr / (2 * sr))


def test_default_soundfont_finds_timgm(timgm_soundfont):
    assert timgm_soundfont.name == "TimGM6mb.sf2" and timgm_soundfont.is_file()
    assert default_soundfont(prefer_fluid=True).is_file()


def test_default_soundfont_error_when_none(monkeypatch):
    import pretty_midi

    monkeypatch.setattr(render_mod, "FLUID_SOUNDFONT", Path("/nonexistent/FluidR3_GM.sf2"))
    monkeypatch.setattr(pretty_midi, "__file__", "/nonexistent/pretty_midi/__init__.py")
    with pytest.raises(DatasetError, match="no General-MIDI soundfont"):
        default_soundfont()


def test_render_note_is_a_real_note(notes, timgm_soundfont):
    assert notes.shape == (8, 64000) and notes.dtype == np.float32
    rms_held = np.sqrt(np.mean(notes[:, :48000] ** 2, axis=1))
    rms_tail = np.sqrt(np.mean(notes[:, -1600:] ** 2, axis=1))
    assert np.all(rms_held > 1e-3)            # audible
    assert np.all(rms_tail < rms_held)        # released, decays
    assert np.all(np.abs(notes) < 1.0)
    # A flute A4 has its strongest partial at 440 Hz.
    flute = render_note(timgm_soundfont, 73, 69, 100)
    assert _f0_peak(flute) == pytest.approx(440.0, rel=0.02)
    # Velocity matters; same arguments give the same samples.
    soft = render_note(timgm_soundfont, 73, 69, 25)
    assert np.sqrt(np.mean(soft ** 2)) < 0.5 * np.sqrt(np.mean(flute ** 2))
    np.testing.assert_array_equal(flute, render_note(timgm_soundfont, 73, 69, 100))


def test_render_note_other_rate_and_length(timgm_soundfont):
    wave = render_note(timgm_soundfont, 73, 69, 100, sample_rate=22050, hold=0.5, release=0.25)
    assert wave.shape == (int(round(0.75 * 22050)),)
    assert _f0_peak(np.pad(wave, (0, 2 * 22050)), 22050) == pytest.approx(440.0, rel=0.02)


@pytest.mark.parametrize("kwargs", [dict(program=128), dict(pitch=-1), dict(velocity=0)])
def test_render_note_rejects_bad_arguments(timgm_soundfont, kwargs):
    args = dict(program=0, pitch=60, velocity=100) | kwargs
    with pytest.raises(ValueError, match="Received"):
        render_note(timgm_soundfont, **args)


def test_render_note_missing_soundfont(tmp_path):
    with pytest.raises(DatasetError, match="soundfont not found"):
        render_note(tmp_path / "nope.sf2", 0, 60, 100)


def test_soundfonts_by_name(timgm_soundfont, monkeypatch, tmp_path):
    import vqkeras.data.render as render

    assert render.named_soundfont("TimGM6mb") == timgm_soundfont
    assert render.named_soundfont("timgm6mb.sf2") == timgm_soundfont
    # Rendering by name uses the same file as by path (what `make data` relies on).
    assert render._resolve_soundfont("TimGM6mb") == render._resolve_soundfont(timgm_soundfont)
    assert render_note("TimGM6mb", 0, 60, 100).shape == (64000,)
    monkeypatch.setattr(render, "FLUID_SOUNDFONT", tmp_path / "FluidR3_GM.sf2")
    with pytest.raises(DatasetError, match="apt-get install fluid-soundfont-gm"):
        render.named_soundfont("FluidR3_GM")


def test_gm_table_is_consistent():
    assert {p.family for p in GM_PROGRAMS.values()} == set(NSYNTH_FAMILIES)
    for p in GM_PROGRAMS.values():
        assert 21 <= p.low < p.high <= 108
    with pytest.raises(ValueError, match="no NSynth instrument family"):
        gm_program(90)  # a synth pad


def test_split_by_instrument_keeps_families_in_train():
    split = render_mod._split_instruments(sorted(GM_PROGRAMS), seed=0)
    assert split == render_mod._split_instruments(sorted(GM_PROGRAMS), seed=0)
    assert split != render_mod._split_instruments(sorted(GM_PROGRAMS), seed=1)
    counts = {s: sum(v == s for v in split.values()) for s in ("train", "valid", "test")}
    assert counts["valid"] == counts["test"] == round(0.1 * len(GM_PROGRAMS))
    for family in NSYNTH_FAMILIES:
        assert any(split[p] == "train" for p in GM_PROGRAMS if GM_PROGRAMS[p].family == family)
    held_families = {GM_PROGRAMS[p].family for p, s in split.items() if s == "test"}
    assert len(held_families) >= 8  # test covers most families, not one family's instruments


def test_rendered_dataset_layout(rendered_dataset):
    summary = json.loads((rendered_dataset / MARKER).read_text())
    instruments = {}
    for split in ("train", "valid", "test"):
        folder = rendered_dataset / f"nsynth-{split}"
        examples = json.loads((folder / "examples.json").read_text())
        assert len(examples) == summary["notes"][split] > 0
        wavs = {p.stem for p in (folder / "audio").glob("*.wav")}
        assert wavs == set(examples)
        for note_str, e in examples.items():
            assert set(e) == NSYNTH_KEYS
            assert note_str == e["note_str"] == f"{e['instrument_str']}-{e['pitch']:03d}-{e['velocity']:03d}"
            assert e["instrument_family_str"] == NSYNTH_FAMILIES[e["instrument_family"]]
            assert e["velocity"] in (75, 127) and 48 <= e["pitch"] <= 72
            instruments.setdefault(e["instrument"], set()).add(split)
        info = sf.info(str(folder / "audio" / f"{note_str}.wav"))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 64000, "PCM_16")
    assert all(len(s) == 1 for s in instruments.values())  # split by instrument
    assert not [p for p in rendered_dataset.parent.iterdir() if ".partial-" in p.name]


def test_render_dataset_reuses_complete_folder(rendered_dataset, timgm_soundfont):
    wav = next((rendered_dataset / "nsynth-train" / "audio").glob("*.wav"))
    before = wav.stat().st_mtime_ns
    again = render_dataset(rendered_dataset, soundfont=timgm_soundfont, programs=[0, 24, 40, 56, 73, 32],
                           pitches=range(48, 73, 4), velocities=(75, 127), progress=False)
    assert again == rendered_dataset and wav.stat().st_mtime_ns == before
    with pytest.raises(DatasetError, match="differing: seed"):
        render_dataset(rendered_dataset, soundfont=timgm_soundfont, programs=[0, 24, 40, 56, 73, 32],
                       pitches=range(48, 73, 4), velocities=(75, 127), seed=5, progress=False)


def test_render_dataset_refuses_foreign_folder(tmp_path, timgm_soundfont):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not a rendered dataset"):
        render_dataset(tmp_path, soundfont=timgm_soundfont, programs=[0], pitches=[60], progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_render_dataset_crash_leaves_nothing(tmp_path, timgm_soundfont, monkeypatch):
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("synth crashed")
        return render_note(*args, **kwargs)

    monkeypatch.setattr(render_mod, "render_note", flaky)
    out = tmp_path / "set"
    with pytest.raises(RuntimeError, match="synth crashed"):
        render_dataset(out, soundfont=timgm_soundfont, programs=[0, 73], pitches=[60, 72], progress=False)
    assert list(tmp_path.iterdir()) == []


def test_render_dataset_overwrite_and_drop_silent(tmp_path, timgm_soundfont, monkeypatch):
    out = render_dataset(tmp_path / "set", soundfont=timgm_soundfont, programs=[0, 24, 73],
                         pitches=[60], velocities=(100,), progress=False)
    assert sum(json.loads((out / MARKER).read_text())["notes"].values()) == 3
    # Everything below the silence threshold is dropped; the old set survives a failed overwrite.
    monkeypatch.setattr(render_mod, "SILENCE_RMS", 10.0)
    with pytest.raises(DatasetError, match="every note was dropped"):
        render_dataset(out, soundfont=timgm_soundfont, programs=[0, 24, 73], pitches=[60],
                       velocities=(100,), progress=False, overwrite=True)
    assert (out / MARKER).is_file()
    monkeypatch.setattr(render_mod, "SILENCE_RMS", 1e-3)
    render_dataset(out, soundfont=timgm_soundfont, programs=[0, 24, 73], pitches=[60],
                   velocities=(50, 100), progress=False, overwrite=True)
    assert sum(json.loads((out / MARKER).read_text())["notes"].values()) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["set"]
