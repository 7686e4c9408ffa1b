"""The rate-distortion benchmark's helpers: instrument families, clip choice, conditions, report."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from vqkeras.data.gm_families import (
    GM_PROGRAMS,
    NSYNTH_FAMILIES,
    family_of_note_name,
    family_of_recipe,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rd():
    spec = importlib.util.spec_from_file_location("rate_distortion",
                                                  ROOT / "benchmarks" / "rate_distortion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, family", [
    ("bass_electronic_018-022-100.wav", "bass"),          # NSynth's own names
    ("keyboard_acoustic_004-060-025", "keyboard"),
    ("synth_lead_synthetic_001-060-100.wav", "synth_lead"),  # a family with an underscore
    ("audio/string_acoustic_003-055-127.wav", "string"),
    ("00012.wav", None),                                   # the codec mix's clips
    ("piano_acoustic_000-060-100.wav", None),              # not an NSynth family
    ("bass_plucked_000-060-100.wav", None),                # not an NSynth source
    ("bass_electronic_018-022.wav", None),                 # no velocity
    ("bass_electronic_x18-022-100.wav", None),
])
def test_family_of_note_name(name, family):
    assert family_of_note_name(name) == family


def test_every_rendered_note_name_gives_its_family(rendered_dataset):
    for split in ("train", "valid", "test"):
        examples = json.loads((rendered_dataset / f"nsynth-{split}" / "examples.json").read_text())
        for note, meta in examples.items():
            assert family_of_note_name(f"{note}.wav") == meta["instrument_family_str"]


def test_family_of_recipe_maps_each_gm_program_once():
    for program, info in GM_PROGRAMS.items():
        recipe = f"FluidR3_GM.sf2:program={program}:pitch=60:velocity=100:hold=1.2"
        assert family_of_recipe(recipe) == info.family
    assert {info.family for info in GM_PROGRAMS.values()} == set(NSYNTH_FAMILIES)
    assert family_of_recipe("TimGM6mb.sf2:program=90:pitch=60") is None  # a pad: no family
    assert family_of_recipe("TimGM6mb.sf2:program=x") is None
    assert family_of_recipe("kits/GMkit/kick.wav") is None                # a real file
    assert family_of_recipe("en-us+m3:s150:p40:The cat sat.") is None    # an utterance


def test_the_mix_recipes_carry_the_program(timgm_soundfont):
    from vqkeras.data.codec_mix import note_clips, note_programs

    clips = note_clips("test", 3, soundfonts=[str(timgm_soundfont)])
    test_programs = note_programs()["test"]
    for clip in clips:
        family = family_of_recipe(clip.source)
        assert family in NSYNTH_FAMILIES
        program = int(clip.source.split("program=")[1].split(":")[0])
        assert program in test_programs and GM_PROGRAMS[program].family == family


def _touch(folder: Path, names) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return sorted(folder / n for n in names)


def test_nsynth_folders_are_sampled_per_instrument_family(rd, tmp_path):
    names = ([f"bass_synthetic_001-{p:03d}-{v:03d}.wav" for p in range(30, 60, 6)
              for v in (25, 50, 75, 100, 127)]
             + [f"mallet_acoustic_005-{p:03d}-100.wav" for p in (60, 68, 76)])
    _touch(tmp_path / "unseen", names)
    chosen = rd.select_clips(tmp_path / "unseen", max_clips=2, per_instrument=8)
    families = [family_of_note_name(p.name) for p in chosen]
    assert families.count("bass") == 8 and families.count("mallet") == 3
    bass = [p.name for p in chosen if p.name.startswith("bass")]
    assert bass[0] == names[0] and bass[-1] == names[24]   # spread over the whole range
    assert len({n.split("-")[1] for n in bass}) == 5          # every pitch
    # --per-instrument 0, or a folder of other names: the first --max-clips.
    assert rd.select_clips(tmp_path / "unseen", 2, 0) == sorted(tmp_path.glob("unseen/*"))[:2]
    plain = _touch(tmp_path / "mix", [f"{n:05d}.wav" for n in range(5)])
    assert rd.select_clips(tmp_path / "mix", 3, 8) == plain[:3]


def test_mix_notes_get_their_family_from_the_manifest(rd, tmp_path):
    mix = tmp_path / "mix"
    files = _touch(mix / "test" / "notes", ["00000.wav", "00001.wav"])
    _touch(mix / "test" / "drums", ["00000.wav"])
    with open(mix / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "family", "split", "source", "offset_s", "seconds"])
        writer.writerow(["test/notes/00000.wav", "notes", "test",
                         "FluidR3_GM.sf2:program=70:pitch=53:velocity=40:hold=1.1", 0, 4])
        writer.writerow(["test/notes/00001.wav", "notes", "test",
                         "TimGM6mb.sf2:program=8:pitch=80:velocity=90:hold=0.5", 0, 4])
        writer.writerow(["test/drums/00000.wav", "drums", "test", "GMkit/kick.wav", 0, 0.6])
    table = rd.mix_instruments(mix / "test" / "notes")
    assert [rd.instrument_family(f, table) for f in files] == ["reed", "mallet"]
    assert rd.instrument_family(mix / "test" / "drums" / "00000.wav", table) is None
    assert rd.mix_instruments(tmp_path / "elsewhere" / "x" / "y") == {}


def test_conditions_are_chosen_by_prefix(rd):
    known = ["vqkeras-S1", "vqkeras-S2", "vqkeras-1.5k", "true-magnitude", "opus-6k", "opus-12k"]
    wanted = rd.condition_filter("vqkeras-S2, vqkeras-1.5k,opus-12k,true", known)
    assert [c for c in known if wanted(c)] == ["vqkeras-S2", "vqkeras-1.5k", "true-magnitude",
                                               "opus-12k"]
    assert all(rd.condition_filter(None, known)(c) for c in known)
    with pytest.raises(SystemExit, match="opus-24k"):
        rd.condition_filter("vqkeras,opus-24k", known)


def _rows():
    rows = []
    quality = {"vqkeras-1.5k": (1.1, 4.0, 4.5), "opus-12k": (11.0, 5.0, 4.6),
               "true-magnitude": (float("nan"), 1.0, 4.7)}
    clips = [("drums", "d0", None), ("notes", "n0", "reed"), ("notes", "n1", "mallet"),
             ("notes-unseen", "u0", "bass"), ("notes-unseen", "u1", "bass"),
             ("notes-unseen", "u2", "flute")]
    for family, clip, instrument in clips:
        for condition, (kbps, lsd, visqol) in quality.items():
            if instrument == "mallet" and condition == "vqkeras-1.5k":
                visqol = 4.9   # one instrument family meets the goal
            rows.append(dict(family=family, clip=clip, instrument=instrument,
                             condition=condition, kind=condition.split("-")[0], kbps=kbps,
                             lsd_db=lsd, loudness_gap_lu=0.1, visqol=visqol))
    return rows


def test_summary_report_and_plots_break_notes_down_by_instrument(rd, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    summary = rd.summarize(pd.DataFrame(_rows()), overall=["drums", "notes"])
    groups = list(dict.fromkeys(summary.family))
    assert groups == ["drums", "notes", "notes-unseen", "all", "notes/mallet", "notes/reed",
                      "notes-unseen/bass", "notes-unseen/flute"]
    clips = summary.groupby("family", sort=False).clips.first()
    assert clips["all"] == 3 and clips["notes-unseen/bass"] == 2   # all: drums and notes only
    rd._write_markdown(tmp_path / "rd.md", summary, 16, 0.01, 0.03)
    text = (tmp_path / "rd.md").read_text()
    assert "## notes-unseen (3 clips)" in text and "## all (3 clips)" in text
    assert "## Notes by instrument family" in text and "### notes-unseen" in text
    assert "| bass | 2 | 1.10 / 4.00 / 4.50 | 11.00 / 5.00 / 4.60 | - / 1.00 / 4.70 |" in text
    goal = text.split("## Goal")[1]
    assert "- notes-unseen/flute: NOT met: vqkeras-1.5k" in goal
    assert "- notes/mallet: met: vqkeras-1.5k at 1.10 kbit/s has ViSQOL 4.90" in goal
    assert "- all: met" in goal and "- notes-unseen: NOT met" in goal and "- speed: met" in goal
    rd._plot(tmp_path / "rd.png", summary[summary.level != "instrument"])
    rd._plot_instruments(tmp_path / "rd_instruments.png", summary)
    for png in ("rd.png", "rd_instruments.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    assert np.isfinite(summary.visqol).all()


def test_mix_families_are_the_test_folders_with_clips(rd, tmp_path):
    mix = tmp_path / "mix"
    for family in ("speech", "notes", "speech-recorded", "drums"):
        _touch(mix / "test" / family, ["00000.wav", "00001.wav"])
    (mix / "test" / "samples").mkdir()                     # no clips: left out
    found = rd.mix_test_families(mix)
    assert list(found) == ["drums", "notes", "speech", "speech-recorded"]
    assert rd.mix_test_families(tmp_path / "none") == {}
    assert list(rd.keep_families(found, "speech-recorded")) == ["speech-recorded"]
    assert list(rd.keep_families(found, "notes, drums")) == ["drums", "notes"]  # folder order
    assert rd.keep_families(found, None) == found
    with pytest.raises(SystemExit, match="samples"):
        rd.keep_families(found, "samples")
    # Each family's first --max-clips: the same clips whichever other families exist.
    assert rd.select_clips(found["notes"], 1, 8) == [mix / "test" / "notes" / "00000.wav"]


def test_recorded_speech_is_reported_apart_from_all(rd, tmp_path):
    pd = pytest.importorskip("pandas")
    rows = [r for r in _rows() if r["family"] != "notes-unseen"]
    rows += [dict(r, family="speech-recorded", clip="s0", instrument=None,
                  visqol=1.5 if r["kind"] == "vqkeras" else r["visqol"])
             for r in rows if r["clip"] == "d0"]
    df = pd.DataFrame(rows)
    families = ["drums", "notes", "speech-recorded"]
    summary = rd.summarize(df, overall=[f for f in families if f not in rd.APART])
    four = rd.summarize(df[df.family != "speech-recorded"], overall=["drums", "notes"])
    pick = ["family", "condition", "kbps", "lsd_db", "visqol", "clips"]
    same = (summary[summary.family == "all"][pick].reset_index(drop=True)
            .equals(four[four.family == "all"][pick].reset_index(drop=True)))
    assert same                                  # "all" is what a four-family run gives
    assert "speech-recorded" in set(summary.family)
    rd._write_markdown(tmp_path / "rd.md", summary, 16, 0.01, 0.03)
    text = (tmp_path / "rd.md").read_text()
    assert "## speech-recorded (1 clips)" in text and "## all (3 clips)" in text
    assert "speech-recorded (recorded dialogue" in text and "\"all\" covers the other" in text
    assert "- speech-recorded: NOT met: vqkeras-1.5k" in text.split("## Goal")[1]
    # Recorded speech alone: no "all".
    alone = rd.summarize(df[df.family == "speech-recorded"], overall=[])
    assert list(dict.fromkeys(alone.family)) == ["speech-recorded"]
    rd._write_markdown(tmp_path / "alone.md", alone, 16, float("nan"), float("nan"), None)
    text = (tmp_path / "alone.md").read_text()
    assert "## all" not in text and "reported on its own." in text
    rd._plot(tmp_path / "alone.png", alone)
    assert (tmp_path / "alone.png").read_bytes()[:4] == b"\x89PNG"


def test_goal_counts_every_file_rate_not_the_mean(rd):
    """A fixed stage count whose mean rate fits 1.5 kbit/s but whose costliest clip
    does not is no candidate for the goal; the rate-capped setting is."""
    pd = pytest.importorskip("pandas")
    rows = []
    for clip, s3_kbps in (("d0", 0.9), ("d1", 2.0)):          # mean 1.45, max 2.0
        for condition, kbps, visqol in (("vqkeras-S3", s3_kbps, 4.7),
                                        ("vqkeras-1.5k", 1.2, 4.4), ("opus-12k", 11.0, 4.6)):
            rows.append(dict(family="drums", clip=clip, instrument=None, condition=condition,
                             kind=condition.split("-")[0], kbps=kbps, lsd_db=3.0,
                             loudness_gap_lu=0.1, visqol=visqol))
    summary = rd.summarize(pd.DataFrame(rows), overall=["drums"])
    lines = rd._verdict(summary)
    assert lines[0].startswith("- drums: NOT met: vqkeras-1.5k at 1.20 kbit/s")
    fits = summary.assign(kbps_max=np.minimum(summary.kbps_max, 1.5))
    assert rd._verdict(fits)[0].startswith("- drums: met: vqkeras-S3")
