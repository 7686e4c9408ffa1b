"""Compiled programs saved with `jax.export` in the user cache.

It sits below the codec and the phase reconstruction, which both use it, next
to `vqkeras.cache`, whose folder it writes into. A warm `vqkeras compress`
then needs neither Keras (about 2 s of CPU to import) nor the ``.keras`` file:
it deserialises the encoder and the decoder (weights included; the decoder
measures the loudness corrections) and runs them; a warm `decompress` also
loads the phase reconstruction loop this way (`vqkeras.phase._compile`);
their machine code comes from JAX's persistent compilation cache
(`vqkeras.cache`). The first run builds them from the Keras model and saves
them. A saved program is keyed by everything that changes it (model
identity, shapes, stages, spectrogram settings, JAX version, a hash of
vqkeras's source), so a new model, JAX or vqkeras writes new files instead
of using stale ones. Only on the JAX backend.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_FORMAT = 1  # bump when the saved files' layout changes


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """Hash of vqkeras's own source: an edited program (a developer's checkout, an
    upgrade) never runs a stale saved copy whose inputs happen to match."""
    root = Path(__file__).resolve().parent  # the vqkeras package
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _folder() -> Path | None:
    from vqkeras.cache import cache_dir, keras_backend

    if keras_backend() != "jax":
        return None

    root = cache_dir()
    return None if root is None else root / "exported"


def load_or_export(name: str, key: dict, example: np.ndarray | tuple[np.ndarray, ...],
                   build: Callable[[], Callable]) -> Callable[..., np.ndarray] | None:
    """A function of arrays: deserialised from the cache, or built, exported and saved.

    Parameters
    ----------
    name : str
        Program name (file name prefix).
    key : dict
        JSON-able description of everything the program depends on.
    example : np.ndarray or tuple of np.ndarray
        The input(s) of the exact shape and dtype the program takes.
    build : callable
        Returns the jitted function (it may import Keras and load the model).

    Returns
    -------
    callable or None
        None when not on JAX or caching is off (the caller runs Keras itself).
    """
    folder = _folder()
    if folder is None:
        return None
    import jax
    from jax import export

    examples = example if isinstance(example, tuple) else (example,)
    full_key = {**key, "name": name, "format": _FORMAT, "code": _code_digest(), "jax": jax.__version__,
                "shape": [list(e.shape) for e in examples],
                "dtype": [str(e.dtype) for e in examples],
                "platform": jax.default_backend()}
    digest = hashlib.sha256(json.dumps(full_key, sort_keys=True).encode()).hexdigest()[:24]
    path = folder / f"{name}-{digest}.jaxexport"
    if path.is_file():
        try:
            return export.deserialize(bytearray(path.read_bytes())).call
        except Exception as err:  # a torn or foreign file: rebuild it
            log.debug("%s: cannot deserialise (%s); exporting again", path, err)
    exported = export.export(build())(*(jax.ShapeDtypeStruct(e.shape, e.dtype)
                                         for e in examples))
    try:
        from vqkeras.files import atomic_write_bytes

        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, exported.serialize())
    except OSError as err:  # a read-only or full cache: just do not keep it
        log.debug("cannot save %s: %s", path, err)
    return exported.call
