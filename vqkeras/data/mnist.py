"""IDX files (MNIST, Fashion-MNIST) read without any download.

IDX format: 2 zero bytes, a type code (0x08 = uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then one
big-endian uint32 per dimension, then the data, big-endian, row-major.
Debian's ``dataset-fashion-mnist`` installs the gzipped files in
``/usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from vqkeras.errors import DatasetError

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_PREFIX = {"train": "train", "test": "t10k"}


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``*-idx1-ubyte``, ``*-idx3-ubyte``, optionally ``.gz``).

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    np.ndarray
        In the file's dtype (native byte order) and shape.

    Raises
    ------
    DatasetError
        Missing file, bad magic number, unknown type code, or a size that
        does not match the header (truncated or trailing data); also a
        corrupt gzip stream.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: IDX file not found")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: corrupt gzip stream ({exc})") from exc
    if len(raw) < 4:
        raise DatasetError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise DatasetError(f"{path}: not an IDX file (magic bytes {raw[:4].hex()})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated header (needs {header} bytes, has {len(raw)})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(f"{path}: header says shape {shape} ({expected} data bytes) but the file has "
                           f"{len(raw) - header} data bytes ({'truncated' if len(raw) - header < expected else 'trailing data'})")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"{root}: neither {stem} nor {stem}.gz found")


def load_mnist(root: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST or Fashion-MNIST from a folder of (gzipped) IDX files.

    Parameters
    ----------
    root : str or PathLike
        Folder with ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``.
    split : {"train", "test"}

    Returns
    -------
    images : np.ndarray [shape=(n, 28, 28), uint8]
    labels : np.ndarray [shape=(n,), uint8]

    Raises
    ------
    DatasetError
        Missing files, malformed IDX, or image and label counts that differ.
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test'. Received: split={split!r}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: MNIST folder not found (Debian: apt install dataset-fashion-mnist)")
    images = load_idx(_find(root, f"{_PREFIX[split]}-images-idx3-ubyte"))
    labels = load_idx(_find(root, f"{_PREFIX[split]}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.dtype != np.uint8:
        raise DatasetError(f"{root}: expected uint8 images (n, rows, cols) and labels (n,), got "
                           f"{images.dtype}{images.shape} and {labels.dtype}{labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{root}: {len(images)} {split} images but {len(labels)} labels")
    return images, labels
