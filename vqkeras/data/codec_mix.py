"""Collect the codec's training mix: notes, real drums, real samples and speech.

The mix has five families of 4-s, 16 kHz mono clips,
each peak-normalised to 1.0 (the codec scales every window to 0 dBFS before
coding it, so this is the level the model always sees):

========  ==========================================  ===========================
family    source (Debian package)                     held-out TEST split
========  ==========================================  ===========================
notes     GM notes rendered from FluidR3_GM            the GM programs that
          (fluid-soundfont-gm) and TimGM6mb (the       ``vqkeras data render``
          pretty_midi wheel)                           holds out as test instruments
drums     recorded kits, /usr/share/hydrogen/data/     ~12% of the files, chosen by
          drumkits (hydrogen-drumkits)                 a hash of their path
samples   /usr/share/lmms/samples (lmms-common)        same rule
speech    espeak-ng, 8 languages, many voice variants  separate sentence lists
speech-   recorded game dialogue in Czech and Dutch,   ~12% of the files, by a
recorded  /usr/share/games/fillets-ng/sound/*/{cs,nl}  hash of their path
          (fillets-ng-data-cs, fillets-ng-data-nl)
========  ==========================================  ===========================

The shipped model was trained before ``speech-recorded`` was added, on the
first four families (`SHIPPED_FAMILIES`; ``MixSizes().only(SHIPPED_FAMILIES)``,
``vqkeras data mix --families notes,drums,samples,speech``). Each family is
drawn on its own, so a five-family mix holds the four-family mix's clips
unchanged. A mix without ``speech-recorded`` records the same parameters as
the code before it did, so older four-family folders are reused and read as
they are (`build_mix` keeps one, with a warning, even when asked for all
five families; `mix_families` says what a folder holds).

Longer files are cut into back-to-back 4-s pieces (at most a few per file),
shorter ones are zero-padded; pieces that are silent, or more than 40 dB
below the loudest part of their file (a decay tail), are dropped. Every
choice is seeded and file lists are sorted, so a rebuild gives the same clips.

`build_mix` writes ``train/<family>/*.wav`` and ``test/<family>/*.wav`` plus
``manifest.csv`` (one row per clip: path, family, split, source, offset) and a
summary marker; `load_mix` reads a split back.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from vqkeras.errors import DatasetError
from vqkeras.files import atomic_folder

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
CLIP_SECONDS = 4.0
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
FAMILIES = ("notes", "drums", "samples", "speech", "speech-recorded")
#: The families of the mix before ``speech-recorded`` was added: the shipped
#: model's training data, and what the benchmarks' overall ("all") rows cover.
SHIPPED_FAMILIES = FAMILIES[:4]
SPLITS = ("train", "test")
MARKER = ".vqkeras-mix.json"
MANIFEST = "manifest.csv"
MANIFEST_FIELDS = ("path", "family", "split", "source", "offset_s", "seconds")
#: A piece whose RMS is below -60 dBFS (before normalisation) is silent.
SILENCE_RMS = 1e-3
#: A piece whose peak is this far below its file's peak is a tail: dropped.
TAIL_DB = -40.0
#: Files shorter than this (single-cycle oscillator shapes) are skipped.
MIN_FILE_SECONDS = 0.05
#: Share of real-audio files held out for TEST (by a hash of the path).
TEST_PERCENT = 12
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aif", ".aiff")
#: Recorded speech: Fish Fillets NG's spoken dialogue, one Debian package per language.
FILLETS_PACKAGES = {"cs": "fillets-ng-data-cs", "nl": "fillets-ng-data-nl"}
_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class MixSources:
    """Where each family comes from (the Debian install locations by default)."""

    soundfonts: tuple[str, ...] = ("FluidR3_GM", "TimGM6mb")
    hydrogen_root: Path = Path("/usr/share/hydrogen/data/drumkits")
    lmms_root: Path = Path("/usr/share/lmms/samples")
    espeak: str = "espeak-ng"
    fillets_root: Path = Path("/usr/share/games/fillets-ng/sound")
    #: Dialogue languages of ``speech-recorded`` (keys of `FILLETS_PACKAGES`).
    fillets_languages: tuple[str, ...] = ("cs", "nl")


@dataclasses.dataclass(frozen=True)
class MixSizes:
    """Clip counts per family and split (upper bounds for the real-audio families).

    The defaults give 2,839 training clips: 1,000 notes (35%, half per
    soundfont), 500 drum clips (18%), 214 LMMS clips (8%: all that
    lmms-common's training files give; the cap of 400 is not reached), 625
    synthesised speech clips (22%) and 500 recorded speech clips (18%).
    """

    train: dict = dataclasses.field(default_factory=lambda: {
        "notes": 1000, "drums": 500, "samples": 400, "speech": 625, "speech-recorded": 500})
    test: dict = dataclasses.field(default_factory=lambda: {
        "notes": 64, "drums": 48, "samples": 48, "speech": 48, "speech-recorded": 48})
    #: At most this many 4-s pieces per file (drums, samples, recorded speech) or
    #: sentence (speech).
    max_pieces: dict = dataclasses.field(default_factory=lambda: {
        "drums": 2, "samples": 4, "speech": 2, "speech-recorded": 2})

    def count(self, family: str, split: str) -> int:
        return int(getattr(self, split).get(family, 0))

    def wanted(self, family: str) -> bool:
        """Whether any split asks for clips of ``family``."""
        return any(self.count(family, split) for split in SPLITS)

    def only(self, families: Sequence[str]) -> "MixSizes":
        """These sizes for ``families`` alone (the others get no clips).

        ``MixSizes().only(SHIPPED_FAMILIES)`` is the shipped model's four-family mix.
        """
        unknown = sorted(set(families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"families must be among {FAMILIES}. Received: {unknown}")

        def keep(table: dict) -> dict:
            return {k: v for k, v in table.items() if k in families}
        return MixSizes(train=keep(self.train), test=keep(self.test),
                        max_pieces=keep(self.max_pieces))


@dataclasses.dataclass(frozen=True)
class Clip:
    """One 4-s clip of the mix (peak 1.0) and where it came from."""

    family: str
    split: str
    source: str     # file path relative to its package root, or the synthesis recipe
    offset_s: float  # start of the piece in the source, seconds
    seconds: float   # seconds of source audio in the clip (the rest is zero padding)
    audio: np.ndarray


def file_split(relative_path: str, test_percent: int = TEST_PERCENT) -> str:
    """``"test"`` for ~``test_percent``% of paths, else ``"train"``; a pure function of the path.

    A file's split never depends on which other files exist, so adding a
    drum kit does not move files between the splits.
    """
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:4], "big") % 100 < test_percent else "train"


def cut_pieces(audio: np.ndarray, max_pieces: int) -> Iterator[tuple[int, np.ndarray, float]]:
    """Back-to-back 4-s pieces ``(index, peak-normalised clip, seconds of audio)``.

    Pieces that are silent or a tail more than `TAIL_DB` below the file's
    peak are skipped (they still count towards ``max_pieces``' positions).
    """
    file_peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    for k in range(max_pieces):
        piece = audio[k * CLIP_SAMPLES:(k + 1) * CLIP_SAMPLES]
        if piece.size == 0:
            return
        peak = float(np.max(np.abs(piece)))
        if peak <= 0.0 or 20 * np.log10(peak / file_peak) < TAIL_DB:
            continue
        padded = np.zeros(CLIP_SAMPLES, np.float32)
        padded[:piece.size] = piece
        if float(np.sqrt(np.mean(np.square(padded, dtype=np.float64)))) < SILENCE_RMS:
            continue
        yield k, (padded / peak).astype(np.float32), piece.size / SAMPLE_RATE


def _missing(what: str, package: str, where: object) -> DatasetError:
    return DatasetError(f"{what} not found ({where}): install Debian's {package} "
                        f"(apt-get install {package})")


def _audio_files(root: Path, package: str, what: str) -> list[Path]:
    if not root.is_dir():
        raise _missing(what, package, root)
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise _missing(what, package, f"no .wav/.flac/.ogg/.aiff under {root}")
    return files


def _read(path: Path) -> np.ndarray | None:
    """Mono 16 kHz samples, or None for a file libsndfile cannot read (logged)."""
    import soundfile as sf
    import soxr

    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        # lmms-common ships a few files whose suffix does not match their content.
        log.info("skipping %s: not readable (%s)", path, err)
        return None
    audio = audio.mean(axis=1)
    if audio.size == 0 or not np.all(np.isfinite(audio)):
        log.info("skipping %s: empty or not finite", path)
        return None
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ")
    return np.asarray(audio, np.float32)


def recorded_speech_files(root: Path, languages: Sequence[str]) -> list[Path]:
    """Fish Fillets NG's dialogue files (``<level>/[<group>/]<language>/*.ogg`` under ``root``).

    Raises
    ------
    DatasetError
        Naming the Debian package of every language with no files.
    """
    files, missing = [], []
    for language in languages:
        if language not in FILLETS_PACKAGES:
            raise ValueError(f"recorded speech languages are {sorted(FILLETS_PACKAGES)}. "
                             f"Received: language={language!r}")
        found = sorted(p for p in Path(root).rglob(f"{language}/*")
                       if p.is_file() and p.parent.name == language
                       and p.suffix.lower() in AUDIO_SUFFIXES)
        if not found:
            package = FILLETS_PACKAGES[language]
            missing.append(str(_missing(f"recorded speech ({language})", package,
                                        f"no {root}/*/{language}/*.ogg")))
        files += found
    if missing:
        raise DatasetError("; ".join(missing))
    return sorted(files)


def real_audio_clips(family: str, split: str, limit: int, *, root: Path, package: str,
                     max_pieces: int, seed: int = 0,
                     files: Sequence[Path] | None = None) -> list[Clip]:
    """Up to ``limit`` clips of one split from the audio files under ``root``.

    The split's files are visited in a seeded shuffle of the sorted list, so a
    limit below what the files give picks pieces from many files, not just
    the first folders. ``files`` (under ``root``) replaces the listing of
    every audio file there.
    """
    if files is None:
        files = _audio_files(root, package, f"{family} ({package})")
    files = [p for p in sorted(files) if file_split(p.relative_to(root).as_posix()) == split]
    order = np.random.default_rng([seed, FAMILIES.index(family)]).permutation(len(files))
    clips: list[Clip] = []
    for i in order:
        if len(clips) >= limit:
            break
        path = files[i]
        audio = _read(path)
        if audio is None or audio.size < MIN_FILE_SECONDS * SAMPLE_RATE:
            continue
        rel = path.relative_to(root).as_posix()
        for k, clip, seconds in cut_pieces(audio, max_pieces):
            if len(clips) < limit:
                clips.append(Clip(family, split, rel, k * CLIP_SECONDS, seconds, clip))
    return clips


def resolve_soundfont(name: str) -> Path:
    """Path of a soundfont named ``FluidR3_GM`` or ``TimGM6mb`` (or a path), with install advice."""
    from vqkeras.data.render import named_soundfont

    return named_soundfont(name)


def note_programs() -> dict[str, list[int]]:
    """GM programs for training and TEST notes: `vqkeras data render`'s own instrument split.

    Training uses only its train instruments, so its valid/test notes (the
    benchmark's soundfont notes) stay unheard; TEST notes use its test ones.
    """
    from vqkeras.data.gm_families import GM_PROGRAMS
    from vqkeras.data.render import _split_instruments

    split = _split_instruments(sorted(GM_PROGRAMS), 0)
    return {s: sorted(p for p, where in split.items() if where == s) for s in SPLITS}


def note_clips(split: str, limit: int, *, soundfonts: Sequence[str], seed: int = 0) -> list[Clip]:
    """``limit`` rendered notes of one split, shared evenly by the soundfonts.

    Each note draws a program (of the split's instruments), a pitch in its
    range, a velocity in 20..127 and a hold of 0.3-3.0 s (the release fills
    the rest of the 4 s). Silent notes and presets a soundfont lacks are
    skipped.
    """
    from vqkeras.data.gm_families import gm_program
    from vqkeras.data.render import render_note

    paths = [resolve_soundfont(name) for name in soundfonts]
    programs = note_programs()[split]
    rng = np.random.default_rng([seed, SPLITS.index(split), 7])
    clips: list[Clip] = []
    seen: set[tuple] = set()
    tries = 0
    while len(clips) < limit and tries < 20 * limit + 100:
        tries += 1
        path = paths[len(clips) % len(paths)]
        program = int(rng.choice(programs))
        info = gm_program(program)
        pitch = int(rng.integers(info.low, info.high + 1))
        velocity = int(rng.integers(20, 128))
        hold = round(float(rng.uniform(0.3, 3.0)), 2)
        key = (path.name, program, pitch, velocity)
        if key in seen:
            continue
        seen.add(key)
        try:
            audio = render_note(path, program, pitch, velocity, sample_rate=SAMPLE_RATE,
                                hold=hold, release=CLIP_SECONDS - hold)
        except DatasetError as err:  # a preset missing from this soundfont
            log.info("skipping note %s: %s", key, err)
            continue
        pieces = list(cut_pieces(audio, 1))
        if not pieces:
            continue
        recipe = f"{path.name}:program={program}:pitch={pitch}:velocity={velocity}:hold={hold}"
        clips.append(Clip("notes", split, recipe, 0.0, CLIP_SECONDS, pieces[0][1]))
    return clips


def espeak_wave(text: str, voice: str, speed: int, pitch: int, espeak: str = "espeak-ng"
                ) -> np.ndarray:
    """Speech synthesised by espeak-ng, mono float32 at 16 kHz."""
    import soundfile as sf
    import soxr

    exe = shutil.which(espeak)
    if exe is None:
        raise _missing("espeak-ng", "espeak-ng", f"no '{espeak}' on PATH")
    run = subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         capture_output=True, check=False)
    if run.returncode != 0 or not run.stdout:
        raise DatasetError(f"espeak-ng failed for voice {voice}: "
                           f"{run.stderr.decode(errors='replace').strip()}")
    audio, rate = sf.read(io.BytesIO(run.stdout), dtype="float32", always_2d=True)
    audio = soxr.resample(audio[:, 0], rate, SAMPLE_RATE, quality="HQ")
    return np.asarray(audio, np.float32)


def speech_clips(split: str, limit: int, *, espeak: str = "espeak-ng", max_pieces: int = 2,
                 seed: int = 0) -> list[Clip]:
    """``limit`` speech clips of one split from its own sentence list.

    Each utterance draws a language (by `speech_text.LANGUAGE_WEIGHTS`), one
    of the split's sentences, a voice variant, a speed of 120-210 words per
    minute and a pitch of 20-80.
    """
    from vqkeras.data import speech_text

    if shutil.which(espeak) is None:
        raise _missing("espeak-ng", "espeak-ng", f"no '{espeak}' on PATH")
    sentences = speech_text.TRAIN if split == "train" else speech_text.TEST
    languages = sorted(speech_text.LANGUAGE_WEIGHTS)
    weights = np.array([speech_text.LANGUAGE_WEIGHTS[lang] for lang in languages])
    rng = np.random.default_rng([seed, SPLITS.index(split), 11])
    clips: list[Clip] = []
    seen: set[tuple] = set()
    tries = 0
    while len(clips) < limit and tries < 20 * limit + 100:
        tries += 1
        lang = languages[int(rng.choice(len(languages), p=weights / weights.sum()))]
        text = sentences[lang][int(rng.integers(len(sentences[lang])))]
        voice = speech_text.VOICES[lang][int(rng.integers(len(speech_text.VOICES[lang])))]
        speed = int(rng.integers(120, 211))
        pitch = int(rng.integers(20, 81))
        if (text, voice) in seen:
            continue
        seen.add((text, voice))
        recipe = f"{voice}:s{speed}:p{pitch}:{text}"
        for k, clip, seconds in cut_pieces(espeak_wave(text, voice, speed, pitch, espeak),
                                           max_pieces):
            if len(clips) < limit:
                clips.append(Clip("speech", split, recipe, k * CLIP_SECONDS, seconds, clip))
    return clips


def check_sources(sources: MixSources, sizes: MixSizes) -> None:
    """Raise one `DatasetError` naming every missing source and its Debian package."""
    wanted = sizes.wanted
    checks = []
    if wanted("notes"):
        checks += [functools.partial(resolve_soundfont, name) for name in sources.soundfonts]
    if wanted("drums"):
        checks.append(functools.partial(_audio_files, Path(sources.hydrogen_root),
                                        "hydrogen-drumkits", "Hydrogen drum kits"))
    if wanted("samples"):
        checks.append(functools.partial(_audio_files, Path(sources.lmms_root), "lmms-common",
                                        "LMMS samples"))
    if wanted("speech-recorded"):
        checks.append(functools.partial(recorded_speech_files, Path(sources.fillets_root),
                                        sources.fillets_languages))
    problems = []
    for check in checks:
        try:
            check()
        except DatasetError as err:
            problems.append(str(err))
    if wanted("speech") and shutil.which(sources.espeak) is None:
        problems.append(str(_missing("espeak-ng", "espeak-ng", f"no '{sources.espeak}' on PATH")))
    if problems:
        raise DatasetError("codec mix: " + "; ".join(problems))


def collect(family: str, split: str, sizes: MixSizes, sources: MixSources, seed: int = 0
            ) -> list[Clip]:
    """The clips of one family and split."""
    limit = sizes.count(family, split)
    if limit == 0:
        return []
    if family == "notes":
        return note_clips(split, limit, soundfonts=sources.soundfonts, seed=seed)
    if family == "drums":
        return real_audio_clips("drums", split, limit, root=Path(sources.hydrogen_root),
                                package="hydrogen-drumkits", max_pieces=sizes.max_pieces["drums"],
                                seed=seed)
    if family == "samples":
        return real_audio_clips("samples", split, limit, root=Path(sources.lmms_root),
                                package="lmms-common", max_pieces=sizes.max_pieces["samples"],
                                seed=seed)
    if family == "speech":
        return speech_clips(split, limit, espeak=sources.espeak,
                            max_pieces=sizes.max_pieces["speech"], seed=seed)
    if family == "speech-recorded":
        root = Path(sources.fillets_root)
        packages = " ".join(FILLETS_PACKAGES[lang] for lang in sources.fillets_languages)
        return real_audio_clips("speech-recorded", split, limit, root=root, package=packages,
                                max_pieces=sizes.max_pieces["speech-recorded"], seed=seed,
                                files=recorded_speech_files(root, sources.fillets_languages))
    raise ValueError(f"family must be one of {FAMILIES}. Received: family={family!r}")


def _parameters(sizes: MixSizes, sources: MixSources, seed: int) -> dict:
    sizes_dict = dataclasses.asdict(sizes)
    sources_dict = {k: str(v) if isinstance(v, Path) else v
                    for k, v in dataclasses.asdict(sources).items()}
    if not sizes.wanted("speech-recorded"):
        # A mix without recorded speech records the parameters that the code
        # before that family wrote, so that older four-family folders (the
        # shipped model's data) are recognised as the same mix and reused.
        for table in sizes_dict.values():
            table.pop("speech-recorded", None)
        sources_dict.pop("fillets_root", None)
        sources_dict.pop("fillets_languages", None)
    # Through JSON, so that it compares equal to the marker's copy (tuples -> lists).
    return json.loads(json.dumps({"format_version": _FORMAT_VERSION, "seed": int(seed),
            "sample_rate": SAMPLE_RATE, "clip_seconds": CLIP_SECONDS,
            "test_percent": TEST_PERCENT, "tail_db": TAIL_DB,
            "sizes": sizes_dict, "sources": sources_dict}))


def build_mix(out_dir: str | os.PathLike, *, sizes: MixSizes | None = None,
              sources: MixSources | None = None, seed: int = 0, overwrite: bool = False,
              progress: bool = True) -> Path:
    """Collect the mix and write it to ``out_dir``.

    Parameters
    ----------
    out_dir : str or PathLike
        Gets ``{train,test}/<family>/<nnnnn>.wav`` (16-bit, 16 kHz, peak 1.0
        within 16-bit rounding), ``manifest.csv`` and a summary marker
        (``.vqkeras-mix.json``: parameters, and files, clips and seconds per
        family and split). A folder holding a mix built with the same
        parameters is reused.
    sizes, sources : optional
        Clip counts and source locations (defaults: `MixSizes`, `MixSources`).
    seed : int
        Seed of every random choice.
    overwrite : bool
        Rebuild a folder that an earlier mix wrote (never a foreign folder).
    progress : bool
        Log one line (INFO) per family and split.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    DatasetError
        A source is missing (the message names its Debian package), or
        ``out_dir`` holds something else.
    """
    from vqkeras.audio_io import write_wav

    out_dir = Path(out_dir)
    sizes = sizes or MixSizes()
    sources = sources or MixSources()
    params = _parameters(sizes, sources, seed)
    marker = out_dir / MARKER
    if out_dir.exists():
        if not marker.is_file():
            if out_dir.is_dir() and not any(out_dir.iterdir()):
                pass
            else:
                raise DatasetError(f"{out_dir} exists and was not written by `vqkeras data mix` "
                                   f"(no {MARKER}); choose an empty or new folder")
        elif not overwrite:
            old = json.loads(marker.read_text()).get("parameters")
            if old == params:
                log.info("%s: a mix with the same parameters, reusing it", out_dir)
                return out_dir
            if (sizes.wanted("speech-recorded")
                    and old == _parameters(sizes.only(SHIPPED_FAMILIES), sources, seed)):
                # Its four families are the clips this build would write for them
                # (each family is drawn on its own): keep the folder rather than fail.
                log.warning("%s holds the four-family mix (no speech-recorded; the shipped "
                            "model's training data): reusing it as it is. For all five "
                            "families pass --overwrite or choose another folder", out_dir)
                return out_dir
            raise DatasetError(f"{out_dir} holds a mix built with other parameters; pass "
                               "overwrite=True (--overwrite) or choose another folder")
    check_sources(sources, sizes)

    rows: list[dict] = []
    summary: dict[str, dict] = {}
    with atomic_folder(out_dir) as tmp_dir:
        for split in SPLITS:
            for family in FAMILIES:
                if not sizes.wanted(family):
                    continue  # no folder, no summary entry: as if the family did not exist
                clips = collect(family, split, sizes, sources, seed)
                folder = tmp_dir / split / family
                folder.mkdir(parents=True, exist_ok=True)
                for n, clip in enumerate(clips):
                    rel = f"{split}/{family}/{n:05d}.wav"
                    write_wav(tmp_dir / rel, clip.audio, SAMPLE_RATE)
                    rows.append({"path": rel, "family": family, "split": split,
                                 "source": clip.source, "offset_s": clip.offset_s,
                                 "seconds": round(clip.seconds, 3)})
                summary.setdefault(family, {})[split] = {
                    "sources": len({c.source for c in clips}), "clips": len(clips),
                    "seconds": round(sum(c.seconds for c in clips), 1)}
                if progress:
                    log.info("mix: %s/%s: %d clips from %d sources", split, family,
                             len(clips), summary[family][split]["sources"])
        with open(tmp_dir / MANIFEST, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        # Written last: its presence means the folder is complete.
        (tmp_dir / MARKER).write_text(json.dumps({"parameters": params, "summary": summary},
                                                 indent=1, ensure_ascii=False))
    return out_dir


def read_manifest(root: str | os.PathLike) -> list[dict]:
    """The manifest rows of a complete mix folder."""
    root = Path(root)
    if not (root / MARKER).is_file():
        raise DatasetError(f"{root}: no {MARKER}; build the mix first: "
                           f"vqkeras data mix --out {root}")
    with open(root / MANIFEST, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def mix_families(root: str | os.PathLike) -> list[str]:
    """The families that a complete mix folder holds clips of, in `FAMILIES` order.

    A folder built before ``speech-recorded`` existed gives `SHIPPED_FAMILIES`.
    """
    present = {r["family"] for r in read_manifest(root)}
    return [f for f in FAMILIES if f in present]


def load_mix(root: str | os.PathLike, split: str, *, families: Sequence[str] = FAMILIES,
             limit: int | None = None, seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Clips ``(n, 64000)`` float32 (peak 1.0) of one split, and their manifest rows.

    ``families`` missing from the folder are skipped (an older four-family
    mix has no ``speech-recorded``); ``limit`` keeps a seeded random subset
    (in manifest order).
    """
    from vqkeras.audio_io import read_wav

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}. Received: split={split!r}")
    rows = [r for r in read_manifest(root) if r["split"] == split and r["family"] in families]
    if not rows:
        held = mix_families(root)
        raise DatasetError(f"{root}: no {split} clips of {list(families)} (the mix holds "
                           f"{', '.join(held) or 'no clips'}; build it with them: "
                           f"vqkeras data mix --out DIR)")
    if limit is not None and len(rows) > limit:
        pick = np.random.default_rng(seed).choice(len(rows), size=limit, replace=False)
        rows = [rows[i] for i in sorted(pick)]
    waves = np.stack([read_wav(Path(root) / r["path"], sample_rate=SAMPLE_RATE,
                               num_samples=CLIP_SAMPLES) for r in rows])
    peaks = np.max(np.abs(waves), axis=1, keepdims=True)
    return (waves / np.maximum(peaks, 1e-6)).astype(np.float32), rows
