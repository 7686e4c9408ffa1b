"""Safe file output: a result file is either complete or absent, never half written,
and never written over one of the command's own inputs."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from vqkeras.errors import OutputPathError


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True if both paths exist and are the same file (symlinks, hard links, ``./x`` vs ``x``)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (or cannot be inspected)
        return False


def check_output_path(output: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an output path that would destroy an input or cannot be a file.

    Call it before the work starts, so a bad output path fails in a second,
    not after the computation.

    Parameters
    ----------
    output : str or PathLike
        The file about to be written.
    inputs : iterable of str or PathLike
        The files the command reads; none of them may be ``output``.

    Returns
    -------
    Path
        ``output`` as a Path.

    Raises
    ------
    OutputPathError
        If ``output`` is the same file as an input (compared with
        `os.path.samefile`), an existing folder, or lies under a file.
    """
    output = Path(output)
    for source in inputs:
        if same_file(output, source):
            raise OutputPathError(f"output {output} is the input file {source}; refusing to "
                                  f"overwrite an input, choose another output name")
    if output.is_dir():
        raise OutputPathError(f"output {output} is an existing folder; give a file name")
    for parent in output.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"output {output}: {parent} is a file, not a folder")
            break
    return output


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` if the block succeeds.

    The temporary file keeps ``path``'s suffix (Keras only saves to ``*.keras``),
    lives in the same folder (so ``os.replace`` is atomic) and gets the
    permissions a plain ``open()`` would. On any error it is removed and
    ``path`` is left untouched. An existing ``path`` is replaced, unless it is
    one of ``inputs`` (`OutputPathError`, checked before and after the block).

    Examples
    --------
    >>> with atomic_path("out/result.csv") as tmp:
    ...     frame.to_csv(tmp)
    """
    inputs = list(inputs)
    path = check_output_path(path, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        check_output_path(path, inputs)  # it may have become an input meanwhile (a new link)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; swap it in if the block succeeds.

    A folder that is only ever seen complete (a rendered data set): on any
    error the temporary folder is removed and ``path`` is left as it was; on
    success an existing ``path`` is moved aside, replaced, then deleted.

    Examples
    --------
    >>> with atomic_folder("data/set") as tmp:
    ...     (tmp / "a.wav").write_bytes(b"...")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            trash = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, trash)
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, *,
                      inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path, inputs=inputs) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *,
                       inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path, inputs=inputs) as tmp:
        tmp.write_bytes(data)
