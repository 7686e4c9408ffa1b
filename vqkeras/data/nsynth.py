"""Loader for datasets in NSynth's layout (the real NSynth or a rendered one).

Layout: ``<root>/nsynth-<split>/examples.json`` (a dict keyed by ``note_str``)
and ``<root>/nsynth-<split>/audio/<note_str>.wav`` (16 kHz mono, 4 s).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vqkeras.data.gm_families import NSYNTH_FAMILIES, NSYNTH_SOURCES
from vqkeras.errors import AudioFileError, DatasetError

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
_REQUIRED_KEYS = ("pitch", "velocity", "instrument_family_str", "instrument_source_str")
_CACHE_VERSION = 1
_IMAGE_CHUNK = 64


def _names(values, allowed: tuple[str, ...], what: str) -> set[str] | None:
    if values is None:
        return None
    if isinstance(values, (str, int)):
        values = [values]
    out = set()
    for v in values:
        if isinstance(v, (int, np.integer)) and 0 <= v < len(allowed):
            out.add(allowed[v])
        elif v in allowed:
            out.add(v)
        else:
            raise ValueError(f"unknown NSynth {what} {v!r}; expected one of {allowed}. Received: {what}s={values!r}")
    return out


class NSynthDataset:
    """One split of an NSynth-layout dataset, filtered, with cached features.

    Parameters
    ----------
    root : str or PathLike
        Folder holding ``nsynth-<split>/``.
    split : {"train", "valid", "test"}
    families, sources : iterable of str/int or None
        Keep only these instrument families (e.g. ``["keyboard"]``) / sources
        (e.g. ``["acoustic"]``); names or NSynth's integer codes.
    pitch_range : (int, int) or None
        Inclusive MIDI pitch range to keep.
    velocities : iterable of int or None
        Velocities to keep.
    max_examples : int or None
        Keep at most this many, evenly spaced over the sorted notes (so every
        instrument stays represented), deterministically.
    strict : bool
        Raise on the first unreadable audio file instead of logging and
        skipping it.
    num_samples, sample_rate : int
        Every waveform is resampled to ``sample_rate`` and padded/trimmed to
        ``num_samples``.

    Attributes
    ----------
    examples : list of dict
        The kept ``examples.json`` entries, sorted by ``note_str``. Notes
        whose audio turns out unreadable are removed when audio is loaded.

    Raises
    ------
    DatasetError
        Missing split folder or ``examples.json``, malformed JSON, an entry
        without the required keys, or an entry whose WAV file is missing.

    Examples
    --------
    >>> ds = NSynthDataset("data/rendered", "train", families=["keyboard"])
    >>> images = ds.spectrogram_images(SpectrogramConfig(), cache_dir="cache")
    >>> for batch in ds.batches(16, config=SpectrogramConfig()): ...
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        *,
        families: Iterable[str | int] | None = None,
        sources: Iterable[str | int] | None = None,
        pitch_range: tuple[int, int] | None = None,
        velocities: Iterable[int] | None = None,
        max_examples: int | None = None,
        strict: bool = False,
        num_samples: int = 64000,
        sample_rate: int = 16000,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}. Received: split={split!r}")
        if max_examples is not None and max_examples < 1:
            raise ValueError(f"max_examples must be positive. Received: max_examples={max_examples}")
        if pitch_range is not None and (len(pitch_range) != 2 or pitch_range[0] > pitch_range[1]):
            raise ValueError(f"pitch_range must be (low, high) with low <= high. Received: pitch_range={pitch_range}")
        self.root = Path(root)
        self.split = split
        self.folder = self.root / f"nsynth-{split}"
        self.strict = bool(strict)
        self.num_samples = int(num_samples)
        self.sample_rate = int(sample_rate)
        if not self.folder.is_dir():
            hint = " (render one with `vqkeras data render --out DIR`)" if not self.root.exists() else ""
            raise DatasetError(f"{self.folder}: split folder not found{hint}")
        index = self.folder / "examples.json"
        if not index.is_file():
            raise DatasetError(f"{index}: missing examples.json")
        try:
            entries = json.loads(index.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{index}: not valid JSON ({exc})") from exc
        if not isinstance(entries, dict):
            raise DatasetError(f"{index}: expected a JSON object keyed by note_str, got {type(entries).__name__}")

        family_set = _names(families, NSYNTH_FAMILIES, "family")
        source_set = _names(sources, NSYNTH_SOURCES, "source")
        velocity_set = None if velocities is None else {int(v) for v in velocities}
        kept = []
        for note_str in sorted(entries):
            entry = entries[note_str]
            if not isinstance(entry, dict) or any(k not in entry for k in _REQUIRED_KEYS):
                missing = [k for k in _REQUIRED_KEYS if not isinstance(entry, dict) or k not in entry]
                raise DatasetError(f"{index}: entry {note_str!r} lacks {missing}")
            if family_set is not None and entry["instrument_family_str"] not in family_set:
                continue
            if source_set is not None and entry["instrument_source_str"] not in source_set:
                continue
            if pitch_range is not None and not pitch_range[0] <= entry["pitch"] <= pitch_range[1]:
                continue
            if velocity_set is not None and entry["velocity"] not in velocity_set:
                continue
            kept.append({**entry, "note_str": entry.get("note_str", note_str)})
        if max_examples is not None and len(kept) > max_examples:
            pick = np.unique(np.linspace(0, len(kept) - 1, max_examples).round().astype(int))
            kept = [kept[i] for i in pick]
        for entry in kept:
            path = self.audio_path(entry)
            if not path.is_file():
                raise DatasetError(f"{path}: audio file of examples.json entry {entry['note_str']!r} is missing")
        self.examples: list[dict] = kept
        self._waveforms: np.ndarray | None = None
        if not kept:
            log.warning("%s: no example matches the filters", self.folder)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.examples)

    def __repr__(self) -> str:
        return f"NSynthDataset({str(self.root)!r}, {self.split!r}, {len(self)} examples)"

    def audio_path(self, example: dict) -> Path:
        """Path of an example's WAV file."""
        return self.folder / "audio" / f"{example['note_str']}.wav"

    def labels(self, key: str = "instrument_family") -> np.ndarray:
        """One ``examples.json`` field for every kept example, e.g. ``"pitch"``."""
        try:
            return np.asarray([e[key] for e in self.examples])
        except KeyError as exc:
            raise ValueError(f"examples have no field {key!r}. Received: key={key!r}") from exc

    # ------------------------------------------------------------------ audio
    def _read_many(self, examples: list[dict]) -> tuple[list[int], list[np.ndarray]]:
        """Read WAVs in a thread pool; returns (indices read, waveforms)."""
        from vqkeras.audio_io import read_wav

        def read(example):
            try:
                return read_wav(self.audio_path(example), sample_rate=self.sample_rate,
                                num_samples=self.num_samples)
            except AudioFileError as exc:
                if self.strict:
                    raise
                log.warning("skipping unreadable example %s: %s", example["note_str"], exc)
                return None

        workers = min(8, (os.cpu_count() or 1) + 2)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(read, examples))
        good = [i for i, r in enumerate(results) if r is not None]
        return good, [results[i] for i in good]

    def load_waveforms(self) -> np.ndarray:
        """All kept examples' audio, ``(n, num_samples)`` float32 (read once, then kept).

        Unreadable files are logged and their examples dropped from
        `examples` (or, with ``strict=True``, the `AudioFileError` is raised).
        """
        if self._waveforms is None:
            good, waves = self._read_many(self.examples)
            self.examples = [self.examples[i] for i in good]
            self._waveforms = (np.stack(waves) if waves
                               else np.zeros((0, self.num_samples), np.float32))
        return self._waveforms

    waveforms = load_waveforms  # the name in docs/design.md

    # ------------------------------------------------------------------ features
    def _cache_key(self, config, time_multiple: int, freq_multiple: int) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({"v": _CACHE_VERSION, "config": dataclasses.asdict(config),
                             "time_multiple": time_multiple, "freq_multiple": freq_multiple,
                             "num_samples": self.num_samples, "sample_rate": self.sample_rate},
                            sort_keys=True).encode())
        for e in self.examples:
            st = self.audio_path(e).stat()
            h.update(f"{e['note_str']}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:20]

    def spectrogram_images(
        self,
        config,
        cache_dir: str | os.PathLike | None = None,
        *,
        time_multiple: int = 4,
        freq_multiple: int = 4,
    ) -> np.ndarray:
        """Model images of every kept example, ``(n, frames, bins - 1, 1)`` in [0, 1].

        Parameters
        ----------
        config : vqkeras.features.SpectrogramConfig
        cache_dir : str, PathLike or None
            If given, the images are stored there as ``nsynth-<split>-<hash>.npy``
            (hash of the file list, sizes, mtimes and config) and later calls
            return a read-only memory map of it instantly.
        time_multiple, freq_multiple : int
            See `vqkeras.features.waveform_to_image`.
        """
        from vqkeras.features import waveform_to_image

        if config.sample_rate != self.sample_rate or config.num_samples != self.num_samples:
            raise ValueError(f"config ({config.sample_rate} Hz, {config.num_samples} samples) does not "
                             f"match the dataset ({self.sample_rate} Hz, {self.num_samples} samples)")
        shape = config.image_shape(time_multiple=time_multiple, freq_multiple=freq_multiple)
        if not self.examples:
            return np.zeros((0, *shape), np.float32)
        if cache_dir is None:
            waves = self.load_waveforms()
            return np.concatenate([
                waveform_to_image(waves[i:i + _IMAGE_CHUNK], config, time_multiple=time_multiple,
                                  freq_multiple=freq_multiple)
                for i in range(0, len(waves), _IMAGE_CHUNK)]) if len(waves) else np.zeros((0, *shape), np.float32)

        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        stem = cache_dir / f"nsynth-{self.split}-{self._cache_key(config, time_multiple, freq_multiple)}"
        npy, notes_file = stem.with_suffix(".npy"), stem.with_suffix(".notes.json")
        if npy.is_file() and notes_file.is_file():
            kept = set(json.loads(notes_file.read_text()))
            self.examples = [e for e in self.examples if e["note_str"] in kept]
            log.info("%s: spectrogram images from cache %s", self.folder, npy)
            return np.load(npy, mmap_mode="r")

        # Stream chunk by chunk into a memory-mapped temp file: the full set
        # of images can exceed RAM on the real NSynth.
        tmp = stem.with_suffix(f".tmp-{os.getpid()}.npy")
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(self.examples), *shape))
            kept_examples, n = [], 0
            for start in range(0, len(self.examples), _IMAGE_CHUNK):
                chunk = self.examples[start:start + _IMAGE_CHUNK]
                good, waves = self._read_many(chunk)
                if waves:
                    out[n:n + len(waves)] = waveform_to_image(np.stack(waves), config, time_multiple=time_multiple,
                                                              freq_multiple=freq_multiple)
                n += len(waves)
                kept_examples += [chunk[i] for i in good]
            out.flush()
            del out
            if n < len(self.examples):
                # Some files were skipped: rewrite without the unused tail.
                full = np.load(tmp, mmap_mode="r")
                np.save(stem.with_suffix(f".tmp2-{os.getpid()}.npy"), np.asarray(full[:n]))
                del full
                os.replace(stem.with_suffix(f".tmp2-{os.getpid()}.npy"), tmp)
            self.examples = kept_examples
            notes_file.write_text(json.dumps([e["note_str"] for e in kept_examples]))
            os.replace(tmp, npy)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return np.load(npy, mmap_mode="r")

    # ------------------------------------------------------------------ batches
    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        config=None,
        cache_dir: str | os.PathLike | None = None,
        drop_remainder: bool = False,
    ) -> Iterator[np.ndarray]:
        """One epoch of numpy batches: images if ``config`` is given, else waveforms.

        For ``model.fit`` on any backend, `vqkeras.data.pipeline.array_dataset`
        wraps the same arrays as a `keras.utils.PyDataset`.
        """
        from vqkeras.data.pipeline import iterate_batches

        data = (self.spectrogram_images(config, cache_dir) if config is not None else self.load_waveforms())
        return iterate_batches(data, batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder)
