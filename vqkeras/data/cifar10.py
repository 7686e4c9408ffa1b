"""CIFAR-10 from its "python" (pickle) or "binary" (.bin) distribution.

The python version is a set of pickles; unpickling runs code named in the
file, so a tampered file could run anything. We unpickle with a
`pickle.Unpickler` whose ``find_class`` allows only the few globals that a
pickled dict of numpy arrays needs and refuses every other one with a
`DatasetError` naming it, before anything runs.

Layouts (``root`` is the extracted folder, e.g. ``cifar-10-batches-py``):

- python: ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` (dicts with
  ``data`` uint8 (10000, 3072) channel-planar RGB, ``labels`` list of int),
  ``batches.meta``;
- binary: ``data_batch_1.bin`` .. ``data_batch_5.bin``, ``test_batch.bin``:
  records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B).
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from vqkeras.errors import DatasetError

_RECORD = 1 + 3072
_SPLIT_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
# (module, name) pairs a pickled dict of numpy arrays may reference:
# numpy's array reconstructor (old and numpy>=2 module paths), ndarray, dtype,
# and _codecs.encode (how Python 3 writes bytes under pickle protocol 2).
_ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
})


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DatasetError(f"{self._path}: refusing to unpickle global {module}.{name} "
                               "(only numpy arrays, lists, dicts, bytes, str and int are allowed)")
        return super().find_class(module, name)


def safe_unpickle(path: str | os.PathLike):
    """Unpickle a file that may only hold dicts/lists/bytes/str/int and numpy arrays.

    Raises
    ------
    DatasetError
        If the file is missing, corrupt, or references any other global (e.g.
        ``os.system``): refused before it can run.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        return _RestrictedUnpickler(io.BytesIO(path.read_bytes()), path).load()
    except DatasetError:
        raise
    except Exception as exc:  # UnpicklingError, EOFError, ValueError... from a damaged file
        raise DatasetError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


def _get(batch: dict, key: str, path: Path):
    # Python 2 pickles read with latin1 give str keys; Python 3 ones keep bytes.
    for k in (key, key.encode()):
        if k in batch:
            return batch[k]
    raise DatasetError(f"{path}: batch has no {key!r} entry (keys: {list(batch)[:6]})")


def _load_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = safe_unpickle(path)
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a dict, got {type(batch).__name__}")
    data = np.asarray(_get(batch, "data", path))
    labels = np.asarray(_get(batch, "labels", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{path}: data must be uint8 (n, 3072), got {data.dtype}{data.shape}")
    if labels.shape != (len(data),):
        raise DatasetError(f"{path}: {len(data)} images but labels of shape {labels.shape}")
    return data, labels.astype(np.int64)


def _load_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise DatasetError(f"{path}: {raw.size} bytes is not a whole number of {_RECORD}-byte records "
                           "(truncated or not a CIFAR-10 .bin file)")
    records = raw.reshape(-1, _RECORD)
    return records[:, 1:], records[:, 0].astype(np.int64)


def load_cifar10(root: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Load CIFAR-10 images and labels, autodetecting the python or binary version.

    Parameters
    ----------
    root : str or PathLike
        The extracted folder (``cifar-10-batches-py`` or ``cifar-10-batches-bin``).
    split : {"train", "test"}

    Returns
    -------
    images : np.ndarray [shape=(n, 32, 32, 3), uint8]
        Channels last.
    labels : np.ndarray [shape=(n,), int64], values 0..9

    Raises
    ------
    DatasetError
        Missing folder/files, a damaged batch, a label outside 0..9, or a
        pickle that references a disallowed global.
    """
    if split not in _SPLIT_FILES:
        raise ValueError(f"split must be 'train' or 'test'. Received: split={split!r}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: CIFAR-10 folder not found")
    names = _SPLIT_FILES[split]
    if all((root / n).is_file() for n in names):
        parts = [_load_python_batch(root / n) for n in names]
    elif all((root / f"{n}.bin").is_file() for n in names):
        parts = [_load_binary_batch(root / f"{n}.bin") for n in names]
    else:
        missing = [n for n in names if not (root / n).is_file() and not (root / f"{n}.bin").is_file()]
        raise DatasetError(f"{root}: no complete CIFAR-10 {split} set (missing {missing}, "
                           "as python pickles or .bin files)")
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{root}: labels outside 0..9 (min {labels.min()}, max {labels.max()})")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_label_names(root: str | os.PathLike) -> list[str]:
    """Class names from ``batches.meta`` (python) or ``batches.meta.txt`` (binary)."""
    root = Path(root)
    if (root / "batches.meta").is_file():
        meta = safe_unpickle(root / "batches.meta")
        names = _get(meta, "label_names", root / "batches.meta")
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    if (root / "batches.meta.txt").is_file():
        return [line.strip() for line in (root / "batches.meta.txt").read_text().splitlines() if line.strip()]
    raise DatasetError(f"{root}: neither batches.meta nor batches.meta.txt found")
