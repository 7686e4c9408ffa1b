"""A per-user cache folder and JAX's persistent compilation cache in it.

A ``vqkeras compress`` spends most of a cold start compiling: the model's
layers and the phase reconstruction are XLA programs. With JAX's persistent
compilation cache a second process loads them from disk instead. The folder
is ``$VQKERAS_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/vqkeras``, else
``~/.cache/vqkeras``; ``VQKERAS_CACHE_DIR=off`` turns caching off. TensorFlow
has no equivalent (its ``tf.function`` graphs are traced anew in each process).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def cache_dir() -> Path | None:
    """The user's vqkeras cache folder (not created), or None if caching is off."""
    explicit = os.environ.get("VQKERAS_CACHE_DIR")
    if explicit is not None:
        return None if explicit.strip().lower() in ("", "off", "0", "none") else Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vqkeras"


def keras_backend() -> str:
    """The Keras backend in use, without importing Keras when ``KERAS_BACKEND`` says it.

    Keras falls back to ``~/.keras/keras.json`` or TensorFlow when the variable
    is unset, so only then is Keras itself asked (importing it).
    """
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    import keras

    return keras.backend.backend()


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache in ``cache_dir()/jax``.

    Call it before the first JAX computation; a no-op on other backends, when
    caching is off, or when the folder cannot be created (then compilation
    just happens every time).

    Returns
    -------
    Path or None
        The cache folder in use.
    """
    if keras_backend() != "jax":
        return None
    root = cache_dir()
    if root is None:
        return None
    folder = root / "jax"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        log.debug("no compilation cache: %s", err)
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Cache every program: the codec's are many small ones (each < 1 s to compile).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def skip_optional_imports() -> None:
    """Keep Keras from importing scikit-learn in a process that never uses it.

    ``import keras`` imports scikit-learn when it is installed, only for its
    scikit-learn wrappers (about 1 s of CPU here); Keras treats a missing
    scikit-learn as "wrappers unavailable". The codec commands call this before
    importing Keras; nothing else in those commands needs scikit-learn.
    """
    if "sklearn" not in sys.modules and "keras" not in sys.modules:
        sys.modules["sklearn"] = None  # type: ignore[assignment]  # import sklearn -> ImportError
