"""Many files through the codec in one process: inputs, output names, the loop.

``vqkeras compress a.wav b.wav notes/ "more/*.wav" out/`` loads the model
once and codes every file into ``out/<stem>.vqz``; ``decompress`` does the
same into ``out/<stem>.wav`` (or ``--format``). The plan (every output path)
is checked before any work: two inputs may not map to one output, and no
output may be one of the inputs. A file that fails is reported and the
others still run.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vqkeras.errors import AudioFileError, OutputPathError, VQKerasError
from vqkeras.files import check_output_path

#: Suffixes taken from a folder given as a compress input (what libsndfile reads).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".mp3")
VQZ_SUFFIXES = (".vqz",)
_GLOB_CHARS = set("*?[")


def is_batch(inputs: Sequence[str], output: str) -> bool:
    """True unless it is the single-file form ``INPUT OUTPUT`` with INPUT a plain path.

    Several inputs, a folder or glob among them, or an output that is an
    existing folder or ends with a path separator mean "into this folder".
    """
    if len(inputs) != 1:
        return True
    single = inputs[0]
    if Path(single).is_dir() or (not Path(single).exists() and _GLOB_CHARS & set(single)):
        return True
    return Path(output).is_dir() or output.endswith((os.sep, "/"))


def expand_inputs(items: Iterable[str], suffixes: Sequence[str]) -> list[Path]:
    """Files named by ``items``: files as given, folders' files with ``suffixes``, globs.

    Raises
    ------
    AudioFileError
        If an item is neither an existing path nor a glob matching a file, or
        a folder holds no file with one of ``suffixes``.
    """
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise AudioFileError(f"{item}: folder holds no {'/'.join(suffixes)} files")
            files.extend(found)
        elif path.exists():
            files.append(path)
        elif _GLOB_CHARS & set(item):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not found:
                raise AudioFileError(f"{item}: no file matches")
            files.extend(found)
        else:
            raise AudioFileError(f"{item}: file not found")
    unique: dict[Path, Path] = {}
    for f in files:  # the same file named twice is coded once
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def plan_outputs(inputs: Sequence[Path], out_dir: str | os.PathLike, suffix: str) -> list[tuple[Path, Path]]:
    """``(input, out_dir/<stem><suffix>)`` pairs, checked before any work starts.

    Raises
    ------
    OutputPathError
        If ``out_dir`` is a file, two inputs would write the same output, or an
        output is one of the inputs (compared with `os.path.samefile`).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"output {out_dir}: several inputs need an output folder, "
                              f"and this is a file")
    pairs, seen = [], {}
    for source in inputs:
        target = out_dir / (source.stem + suffix)
        if target in seen:
            raise OutputPathError(f"{seen[target]} and {source} would both be written to {target}; "
                                  f"code them into different folders")
        seen[target] = source
        check_output_path(target, inputs)
        pairs.append((source, target))
    return pairs


@dataclass
class BatchResult:
    """What happened to one file: ``error`` is None on success."""

    source: Path
    target: Path
    error: str | None = None


def run_batch(pairs: Sequence[tuple[Path, Path]], code_one: Callable[[Path, Path], object], *,
              desc: str, progress: bool = True,
              report: Callable[[BatchResult], None] | None = None) -> list[BatchResult]:
    """Run ``code_one(source, target)`` on every pair with one progress bar.

    Expected failures (`VQKerasError`, `OSError`) of one file are recorded and
    passed to ``report``; the loop goes on. Anything else (a bug) propagates.
    """
    from tqdm.auto import tqdm

    results = []
    bar = tqdm(pairs, desc=desc, unit="file", disable=None if progress else True, leave=False)
    for source, target in bar:
        result = BatchResult(source, target)
        try:
            code_one(source, target)
        except (VQKerasError, OSError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            where = f"{err.filename}: " if isinstance(err, OSError) and err.filename else ""
            result.error = " ".join(f"{source}: {where}{reason}".split())
        results.append(result)
        if report is not None:
            report(result)
    bar.close()
    return results
