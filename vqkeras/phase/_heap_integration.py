"""Heap integration of phase gradients (the inner loop of PGHI), compiled with numba.

A separate module so that `import vqkeras` does not import numba; numba comes
with librosa. Compiled code is cached on disk.
"""

import numba
import numpy as np


@numba.njit(cache=True)
def _heap_push(keys, vals, size, key, val):
    i = size
    keys[i] = key
    vals[i] = val
    while i > 0:
        parent = (i - 1) // 2
        if keys[parent] >= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        vals[parent], vals[i] = vals[i], vals[parent]
        i = parent
    return size + 1


@numba.njit(cache=True)
def _heap_pop(keys, vals, size):
    top = vals[0]
    size -= 1
    keys[0] = keys[size]
    vals[0] = vals[size]
    i = 0
    while True:
        left = 2 * i + 1
        right = left + 1
        best = i
        if left < size and keys[left] > keys[best]:
            best = left
        if right < size and keys[right] > keys[best]:
            best = right
        if best == i:
            break
        keys[best], keys[i] = keys[i], keys[best]
        vals[best], vals[i] = vals[i], vals[best]
        i = best
    return top, size


@numba.njit(cache=True, nogil=True)  # nogil: pghi_phase integrates items on threads
def integrate(logmag, tgrad, fgrad, usable, phase, known):
    """Heap integration of one item, in place. All arrays (frames, bins).

    ``known`` coefficients keep their phase and are integrated from first
    (loudest first), so new phase continues theirs.
    """
    frames, bins = logmag.shape
    n = frames * bins
    flat = logmag.ravel()
    order = np.argsort(-flat)
    done = ~usable.ravel().copy()  # unusable coefficients keep their (random) phase
    keys = np.empty(n, np.float64)
    vals = np.empty(n, np.int64)
    size = 0
    ph = phase.ravel()
    tg = tgrad.ravel()
    fg = fgrad.ravel()
    kn = known.ravel()
    for idx in range(n):
        if kn[idx]:
            done[idx] = True
            size = _heap_push(keys, vals, size, flat[idx], idx)
    size = _grow(keys, vals, size, done, ph, tg, fg, flat, frames, bins)
    for seed_pos in range(n):
        seed = order[seed_pos]
        if done[seed]:
            continue
        done[seed] = True
        ph[seed] = 0.0
        size = _heap_push(keys, vals, size, flat[seed], seed)
        size = _grow(keys, vals, size, done, ph, tg, fg, flat, frames, bins)


@numba.njit(cache=True)
def _grow(keys, vals, size, done, ph, tg, fg, flat, frames, bins):
    """Integrate outwards from the coefficients on the heap until it is empty."""
    while size > 0:
        idx, size = _heap_pop(keys, vals, size)
        m = idx // bins
        k = idx - m * bins
        if m + 1 < frames:
            j = idx + bins
            if not done[j]:
                ph[j] = ph[idx] + 0.5 * (tg[idx] + tg[j])
                done[j] = True
                size = _heap_push(keys, vals, size, flat[j], j)
        if m > 0:
            j = idx - bins
            if not done[j]:
                ph[j] = ph[idx] - 0.5 * (tg[idx] + tg[j])
                done[j] = True
                size = _heap_push(keys, vals, size, flat[j], j)
        if k + 1 < bins:
            j = idx + 1
            if not done[j]:
                ph[j] = ph[idx] + 0.5 * (fg[idx] + fg[j])
                done[j] = True
                size = _heap_push(keys, vals, size, flat[j], j)
        if k > 0:
            j = idx - 1
            if not done[j]:
                ph[j] = ph[idx] - 0.5 * (fg[idx] + fg[j])
                done[j] = True
                size = _heap_push(keys, vals, size, flat[j], j)
    return size
