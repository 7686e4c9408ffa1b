"""Batching helpers shared by the dataset loaders (numpy in memory; any backend)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np


def iterate_batches(
    arrays: np.ndarray | tuple[np.ndarray, ...],
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    drop_remainder: bool = False,
) -> Iterator:
    """Yield one epoch of batches from arrays that share their first axis.

    Parameters
    ----------
    arrays : np.ndarray or tuple of np.ndarray
        Data (memory-mapped arrays work: only the batch is read).
    batch_size : int
    shuffle : bool
        Visit the items in a random order drawn from ``seed``.
    seed : int
    drop_remainder : bool
        Skip the last, smaller batch.

    Yields
    ------
    np.ndarray or tuple of np.ndarray
        Same structure as ``arrays``.
    """
    single = isinstance(arrays, np.ndarray)
    arrays = (arrays,) if single else tuple(arrays)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"arrays must share their first axis. Received lengths {[len(a) for a in arrays]}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_remainder else n
    for start in range(0, stop, batch_size):
        # Sorted indices read memory-mapped files sequentially.
        index = np.sort(order[start:start + batch_size]) if shuffle else order[start:start + batch_size]
        batch = tuple(np.asarray(a[index]) for a in arrays)
        yield batch[0] if single else batch


def array_dataset(
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
):
    """A `keras.utils.PyDataset` over in-memory (or memory-mapped) arrays.

    Works with ``model.fit`` on every backend; reshuffles (seeded) at each
    epoch end. With ``y=None`` it yields ``x`` alone (for models whose
    ``train_step`` reconstructs the input).
    """
    import keras

    class _ArrayDataset(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self._order = self._make_order()

        def _make_order(self):
            n = len(x)
            return np.random.default_rng(seed + self.epoch).permutation(n) if shuffle else np.arange(n)

        def __len__(self):
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, i):
            index = np.sort(self._order[i * batch_size:(i + 1) * batch_size])
            xb = np.asarray(x[index])
            return xb if y is None else (xb, np.asarray(y[index]))

        def on_epoch_end(self):
            self.epoch += 1
            self._order = self._make_order()

    if y is not None and len(y) != len(x):
        raise ValueError(f"x and y must have the same length. Received: {len(x)} and {len(y)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    return _ArrayDataset()
