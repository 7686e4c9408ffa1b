"""Render a General-MIDI soundfont into a dataset with NSynth's layout.

NSynth itself is 30 GB; a soundfont gives a small, license-clean stand-in with
the same structure (``nsynth-{train,valid,test}/examples.json`` +
``audio/<note_str>.wav``, 16 kHz mono, 4 s: 3 s held + 1 s release), so the
same loader, experiments and notebooks run on either.

Notes are synthesised with TinySoundFont (no audio device needed) at 48 kHz
and resampled to the target rate with soxr, which avoids the aliasing of the
synth's sample interpolation at low output rates.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from vqkeras.data.gm_families import (
    GM_PROGRAMS,
    MAX_PITCH,
    MIN_PITCH,
    NSYNTH_FAMILIES,
    NSYNTH_QUALITIES,
    NSYNTH_SOURCES,
    gm_program,
)
from vqkeras.errors import DatasetError
from vqkeras.files import atomic_folder

log = logging.getLogger(__name__)

FLUID_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
DEFAULT_PITCH_STEP = 8
DEFAULT_VELOCITIES = (25, 50, 75, 100, 127)
SPLITS = ("train", "valid", "test")
MARKER = ".vqkeras-render.json"
#: Notes quieter than this RMS (-60 dBFS) are dropped as silent.
SILENCE_RMS = 1e-3
#: Synthesis rate before resampling to the dataset's rate.
_SYNTH_RATE = 48000
#: Synth output gain in dB.
_GAIN_DB = -6.0
_FORMAT_VERSION = 1


def default_soundfont(prefer_fluid: bool = True) -> Path:
    """Return the General-MIDI soundfont to render with.

    Parameters
    ----------
    prefer_fluid : bool
        Use FluidR3_GM (Debian's ``fluid-soundfont-gm``, 141 MB, better sound)
        when installed; otherwise, or if False, the small TimGM6mb that ships
        inside the ``pretty_midi`` package.

    Raises
    ------
    DatasetError
        If neither soundfont is available.
    """
    if prefer_fluid and FLUID_SOUNDFONT.is_file():
        return FLUID_SOUNDFONT
    try:
        import pretty_midi
    except ImportError:
        pretty_midi = None
    if pretty_midi is not None:
        timgm = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
        if timgm.is_file():
            return timgm
    raise DatasetError(
        f"no General-MIDI soundfont found: install Debian's fluid-soundfont-gm ({FLUID_SOUNDFONT}) "
        "or the pretty_midi package (ships TimGM6mb.sf2), or pass soundfont=PATH")


#: Soundfonts known by name (``--soundfont TimGM6mb``): where each comes from.
SOUNDFONT_NAMES = {"fluidr3_gm": "Debian's fluid-soundfont-gm", "timgm6mb": "the pretty_midi package"}


def named_soundfont(name: str | os.PathLike) -> Path:
    """Resolve ``FluidR3_GM`` / ``TimGM6mb`` (any case, optional ``.sf2``) or a path.

    Raises
    ------
    DatasetError
        If the named soundfont is not installed (naming what to install), or
        a path does not exist.
    """
    key = str(name).lower().removesuffix(".sf2")
    if key == "fluidr3_gm":
        if FLUID_SOUNDFONT.is_file():
            return FLUID_SOUNDFONT
        raise DatasetError(f"FluidR3_GM not found ({FLUID_SOUNDFONT}): install Debian's "
                           "fluid-soundfont-gm (apt-get install fluid-soundfont-gm)")
    if key == "timgm6mb":
        try:
            return default_soundfont(prefer_fluid=False)
        except DatasetError:
            raise DatasetError("TimGM6mb not found: install the pretty_midi package "
                               "(it ships TimGM6mb.sf2)") from None
    path = Path(name)
    if not path.is_file():
        raise DatasetError(f"soundfont not found: {path} (or name one of: FluidR3_GM, TimGM6mb)")
    return path


class _LoadedSoundFont:
    """A parsed soundfont plus a lock: TinySoundFont objects hold voice state."""

    def __init__(self, path: Path):
        import tinysoundfont._tinysoundfont as tsf

        try:
            self.sf = tsf.SoundFont(str(path))
        except Exception as exc:  # the binding raises plain Exception/RuntimeError
            raise DatasetError(f"{path}: cannot load soundfont ({exc})") from exc
        # -6 dB of headroom: at velocity 127 many GM presets otherwise clip.
        self.sf.set_output(tsf.OutputMode.Mono, _SYNTH_RATE, _GAIN_DB)
        self.sf.set_max_voices(64)
        self.lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load_soundfont(path: str) -> _LoadedSoundFont:
    # Parsing FluidR3 takes ~0.6 s; cache it per path for the whole process.
    return _LoadedSoundFont(Path(path))


def _resolve_soundfont(soundfont: str | os.PathLike | None) -> Path:
    path = default_soundfont() if soundfont is None else named_soundfont(soundfont)
    return path.resolve()


def render_note(
    soundfont: str | os.PathLike | None,
    program: int,
    pitch: int,
    velocity: int,
    *,
    sample_rate: int = 16000,
    hold: float = 3.0,
    release: float = 1.0,
) -> np.ndarray:
    """Render one note of a GM program: ``hold`` seconds pressed, then ``release``.

    Parameters
    ----------
    soundfont : str, PathLike or None
        SF2/SF3 file; None uses `default_soundfont()`.
    program : int
        0-based General-MIDI program (0 = Acoustic Grand Piano).
    pitch : int
        MIDI key, 0..127 (60 = middle C).
    velocity : int
        MIDI velocity, 1..127.
    sample_rate : int
        Output sample rate in Hz.
    hold, release : float
        Seconds before the note-off, and seconds rendered after it.

    Returns
    -------
    np.ndarray [shape=(round((hold + release) * sample_rate),), dtype=float32]
        Mono samples, nominally in [-1, 1] (not clipped: callers check peaks).

    Raises
    ------
    DatasetError
        If the soundfont cannot be loaded or has no preset for ``program``.
    ValueError
        For out-of-range program, pitch, velocity, rate or durations.
    """
    import soxr

    for name, value, lo, hi in (("program", program, 0, 127), ("pitch", pitch, 0, 127),
                                ("velocity", velocity, 1, 127)):
        if not lo <= int(value) <= hi:
            raise ValueError(f"{name} must be in {lo}..{hi}. Received: {name}={value}")
    if sample_rate <= 0 or hold <= 0 or release < 0:
        raise ValueError(f"sample_rate and hold must be positive and release >= 0. Received: "
                         f"sample_rate={sample_rate}, hold={hold}, release={release}")
    loaded = _load_soundfont(str(_resolve_soundfont(soundfont)))
    hold_n = int(round(hold * _SYNTH_RATE))
    release_n = int(round(release * _SYNTH_RATE))
    buffer = np.zeros(hold_n + release_n, dtype=np.float32)
    with loaded.lock:
        sf = loaded.sf
        sf.reset()  # silence voices left over from the previous note, reset channels
        try:
            sf.channel_set_preset_number(0, int(program), False)
        except RuntimeError as exc:
            raise DatasetError(f"soundfont has no preset for GM program {program} ({exc})") from exc
        sf.channel_note_on(0, int(pitch), int(velocity) / 127.0)
        sf.render(memoryview(buffer[:hold_n]).cast("B"), False)
        sf.channel_note_off(0, int(pitch))
        if release_n:
            sf.render(memoryview(buffer[hold_n:]).cast("B"), False)
        sf.reset()
    out_n = int(round((hold + release) * sample_rate))
    if sample_rate != _SYNTH_RATE:
        buffer = soxr.resample(buffer, _SYNTH_RATE, sample_rate, quality="HQ")
    if buffer.shape[0] >= out_n:
        buffer = buffer[:out_n]
    else:
        buffer = np.pad(buffer, (0, out_n - buffer.shape[0]))
    return np.ascontiguousarray(buffer, dtype=np.float32)


def _pitches_for(program: int, pitches: Iterable[int] | None, pitch_step: int) -> list[int]:
    info = gm_program(program)
    if pitches is not None:
        return sorted({int(p) for p in pitches if info.low <= int(p) <= info.high})
    # Offset the grid by the program number so that, across instruments, every
    # pitch class appears even with a coarse step.
    start = info.low + program % pitch_step
    return list(range(start, info.high + 1, pitch_step))


def _split_instruments(programs: Sequence[int], seed: int) -> dict[int, str]:
    """Assign each program to train/valid/test (~80/10/10), by instrument.

    Held-out instruments are drawn round-robin over families (largest first),
    only from families that keep at least one instrument in train, so every
    family stays in train and valid/test cover as many families as possible.
    With fewer than 3 instruments everything goes to train.
    """
    rng = np.random.default_rng(seed)
    pools: dict[str, list[int]] = {}
    for program in programs:
        pools.setdefault(gm_program(program).family, []).append(program)
    families = sorted(pools)
    rng.shuffle(families)
    for family in families:
        rng.shuffle(pools[family])
    n = len(programs)
    n_held = 2 * max(1, round(0.1 * n)) if n >= 3 else 0
    held: list[int] = []
    while len(held) < n_held:
        # Families with most instruments left go first (stable over the shuffled order).
        candidates = sorted((f for f in families if len(pools[f]) > 1), key=lambda f: -len(pools[f]))
        if not candidates:
            # Only singletons left: hold some out anyway so valid/test are not empty.
            candidates = [f for f in families if pools[f]]
        for family in candidates:
            if len(held) < n_held:
                held.append(pools[family].pop())
    split = {program: "train" for program in programs}
    for i, program in enumerate(held):
        split[program] = "test" if i % 2 == 0 else "valid"
    return split


def _soundfont_id(path: Path) -> dict:
    return {"name": path.name, "bytes": path.stat().st_size}


def _foreign_files(out_dir: Path) -> list[str]:
    """Paths under ``out_dir`` (relative) that a render does not write."""
    ours = {MARKER} | {f"nsynth-{split}" for split in SPLITS}
    ours |= {f"nsynth-{split}/{name}" for split in SPLITS for name in ("examples.json", "audio")}
    foreign = []
    for path in sorted(out_dir.rglob("*")):
        rel = path.relative_to(out_dir).as_posix()
        parts = rel.split("/")
        is_note = (len(parts) == 3 and parts[0] in {f"nsynth-{s}" for s in SPLITS}
                   and parts[1] == "audio" and path.suffix == ".wav"
                   and path.is_file() and not path.is_symlink())
        if rel not in ours and not is_note:
            foreign.append(rel)
    return foreign


def _check_replaceable(out_dir: Path) -> None:
    """Raise `DatasetError` unless ``out_dir`` is empty or holds only what a render wrote.

    ``overwrite`` deletes the old folder: it must never delete a user's files.
    """
    if not out_dir.is_dir():
        raise DatasetError(f"{out_dir} is a file, not a dataset folder; refusing to replace it")
    if not any(out_dir.iterdir()):
        return
    foreign = _foreign_files(out_dir)
    if not (out_dir / MARKER).is_file():
        listed = foreign or [p.name for p in out_dir.iterdir()]
        raise DatasetError(f"{out_dir} was not made by `vqkeras data render` (no {MARKER}); "
                           f"--overwrite replaces only a rendered dataset, and would delete: "
                           f"{_name_some(listed)}; choose another folder")
    if foreign:
        raise DatasetError(f"{out_dir} holds files that the renderer did not write: "
                           f"{_name_some(foreign)}; move them away or choose another folder")


def _name_some(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def render_dataset(
    out_dir: str | os.PathLike,
    *,
    soundfont: str | os.PathLike | None = None,
    programs: Iterable[int] | None = None,
    pitches: Iterable[int] | None = None,
    velocities: Iterable[int] = DEFAULT_VELOCITIES,
    pitch_step: int | None = None,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    sample_rate: int = 16000,
) -> Path:
    """Render GM programs into an NSynth-layout dataset folder.

    Parameters
    ----------
    out_dir : str or PathLike
        Dataset root; gets ``nsynth-{train,valid,test}/`` with ``examples.json``
        and ``audio/<note_str>.wav``. It must not exist, be empty, or hold a
        complete earlier render with the same parameters (then it is reused).
    soundfont : str, PathLike or None
        SF2/SF3 file (default: `default_soundfont()`).
    programs : iterable of int or None
        GM programs (default: all 96 that map to an NSynth family, see
        `vqkeras.data.gm_families`). Programs without a family raise ValueError.
    pitches : iterable of int or None
        MIDI pitches to render (each program keeps those inside its range).
        Default: each program's range, every ``pitch_step``-th key.
    velocities : iterable of int
        MIDI velocities, like NSynth's five.
    pitch_step : int or None
        Key step when ``pitches`` is None (default 8: ~2,800 notes, ~360 MB,
        from all programs; 1 renders all ~22,600).
    seed : int
        Seed of the train/valid/test split by instrument.
    progress : bool
        Show a tqdm progress bar.
    overwrite : bool
        Render again even if ``out_dir`` holds a complete dataset. Only a
        folder that a render made (it has the marker file and nothing else
        than the dataset's files) or an empty one is replaced; anything else
        raises `DatasetError` naming the foreign files.
    sample_rate : int
        Sample rate of the WAV files.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    DatasetError
        If the soundfont is missing, ``out_dir`` holds something else (and
        ``overwrite`` is False), or no note survives the checks.

    Notes
    -----
    Notes that are silent (RMS < 1e-3) or clip (peak >= 1) are dropped and
    counted in the marker file. The folder is built next to ``out_dir`` and
    renamed into place, so an interrupted render never leaves half a dataset.
    """
    from tqdm.auto import tqdm

    from vqkeras.audio_io import write_wav

    out_dir = Path(out_dir)
    sf_path = _resolve_soundfont(soundfont)
    step = DEFAULT_PITCH_STEP if pitch_step is None else int(pitch_step)
    if step < 1:
        raise ValueError(f"pitch_step must be >= 1. Received: pitch_step={pitch_step}")
    program_list = sorted(GM_PROGRAMS) if programs is None else sorted({int(p) for p in programs})
    for program in program_list:
        gm_program(program)  # raises ValueError naming a program without a family
    velocity_list = sorted({int(v) for v in velocities})
    for v in velocity_list:
        if not 1 <= v <= 127:
            raise ValueError(f"velocities must be in 1..127. Received: velocity={v}")
    pitch_list = None if pitches is None else sorted({int(p) for p in pitches})
    if pitch_list is not None and any(not MIN_PITCH <= p <= MAX_PITCH for p in pitch_list):
        raise ValueError(f"pitches must be in {MIN_PITCH}..{MAX_PITCH}. Received: pitches={pitch_list}")

    params = {
        "format_version": _FORMAT_VERSION,
        "soundfont": _soundfont_id(sf_path),
        "programs": program_list,
        "pitches": pitch_list,
        "pitch_step": step,
        "velocities": velocity_list,
        "seed": int(seed),
        "sample_rate": int(sample_rate),
        "gain_db": _GAIN_DB,
        "hold": 3.0,
        "release": 1.0,
    }
    marker = out_dir / MARKER
    if out_dir.exists() and not overwrite:
        if marker.is_file():
            previous = json.loads(marker.read_text())
            if previous.get("parameters") == params:
                log.info("%s: complete dataset with the same parameters, reusing it", out_dir)
                return out_dir
            old = previous.get("parameters") or {}
            differ = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
            raise DatasetError(
                f"{out_dir} holds a dataset rendered with other parameters (differing: "
                f"{', '.join(differ)}); pass overwrite=True (--overwrite) or choose another folder")
        if not out_dir.is_dir() or any(out_dir.iterdir()):
            raise DatasetError(f"{out_dir} exists and is not a rendered dataset (no {MARKER}); "
                               "choose an empty or new folder")
    if out_dir.exists() and overwrite:
        _check_replaceable(out_dir)

    split_of = _split_instruments(program_list, seed)
    jobs = [(program, pitch, velocity) for program in program_list
            for pitch in _pitches_for(program, pitch_list, step) for velocity in velocity_list]
    if not jobs:
        raise DatasetError(f"nothing to render: no pitch of {pitch_list} lies in the range of programs "
                           f"{program_list}")

    # Instrument names like NSynth's: family_source_NNN, numbered per (family, source).
    counters: dict[tuple[str, str], int] = {}
    instrument_str: dict[int, str] = {}
    for program in program_list:
        info = gm_program(program)
        k = counters.get((info.family, info.source), 0)
        counters[(info.family, info.source)] = k + 1
        instrument_str[program] = f"{info.family}_{info.source}_{k:03d}"

    with atomic_folder(out_dir) as tmp_dir:
        examples: dict[str, dict[str, dict]] = {split: {} for split in SPLITS}
        for split in SPLITS:
            (tmp_dir / f"nsynth-{split}" / "audio").mkdir(parents=True)
        dropped = {"silent": 0, "clipped": 0}
        bar = tqdm(jobs, desc=f"rendering {sf_path.name}", unit="note", disable=not progress)
        for program, pitch, velocity in bar:
            audio = render_note(sf_path, program, pitch, velocity, sample_rate=sample_rate)
            if float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) < SILENCE_RMS:
                dropped["silent"] += 1
                continue
            if float(np.max(np.abs(audio))) >= 1.0:
                dropped["clipped"] += 1
                continue
            info = gm_program(program)
            split = split_of[program]
            note_str = f"{instrument_str[program]}-{pitch:03d}-{velocity:03d}"
            write_wav(tmp_dir / f"nsynth-{split}" / "audio" / f"{note_str}.wav", audio, sample_rate)
            examples[split][note_str] = {
                "note": sum(len(e) for e in examples.values()),
                "note_str": note_str,
                "instrument": program,
                "instrument_str": instrument_str[program],
                "pitch": pitch,
                "velocity": velocity,
                "sample_rate": sample_rate,
                "instrument_family": NSYNTH_FAMILIES.index(info.family),
                "instrument_family_str": info.family,
                "instrument_source": NSYNTH_SOURCES.index(info.source),
                "instrument_source_str": info.source,
                "qualities": [0] * len(NSYNTH_QUALITIES),
                "qualities_str": [],
            }
        kept = sum(len(e) for e in examples.values())
        if kept == 0:
            raise DatasetError(f"every note was dropped ({dropped}); is {sf_path} a General-MIDI soundfont?")
        for split in SPLITS:
            (tmp_dir / f"nsynth-{split}" / "examples.json").write_text(
                json.dumps(examples[split], indent=1, sort_keys=True))
        summary = {
            "parameters": params,
            "soundfont_path": str(sf_path),
            "notes": {split: len(examples[split]) for split in SPLITS},
            "instruments": {split: sorted(p for p, s in split_of.items() if s == split) for split in SPLITS},
            "dropped": dropped,
        }
        # The marker is written last: its presence means the folder is complete.
        (tmp_dir / MARKER).write_text(json.dumps(summary, indent=1))
    log.info("rendered %d notes into %s (%s; dropped %s)", kept, out_dir, summary["notes"], dropped)
    return out_dir


def dataset_digest(root: str | os.PathLike) -> str:
    """Short hash of a rendered dataset's parameters (for cache keys and reports)."""
    marker = Path(root) / MARKER
    if not marker.is_file():
        raise DatasetError(f"{root}: no {MARKER}; not a complete rendered dataset")
    params = json.loads(marker.read_text())["parameters"]
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
