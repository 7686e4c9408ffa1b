"""What vqkeras sets up once Keras is imported, and not before.

``import vqkeras`` imports nothing of Keras (the command line starts faster
without it), yet two things must happen as soon as Keras is there:

- **Registration.** Keras resolves a saved class by its registered name
  (``vqkeras>VectorQuantizer``), so `keras.models.load_model` finds a vqkeras
  layer or model only once the module defining it has run its
  `keras.saving.register_keras_serializable` decorator.
- **Torch threads.** On a machine with two CPUs or fewer, torch's default of
  one intra-op thread per core makes small work up to ~50x slower as soon as
  another process wants a core (`benchmarks/torch_threads.py`), so vqkeras
  sets one thread there. ``VQKERAS_TORCH_THREADS=N`` chooses N instead (0 keeps
  torch's default), and so does setting ``OMP_NUM_THREADS``.

If Keras is already imported, `on_keras_loaded` runs at ``import vqkeras``;
otherwise a one-shot import hook runs it right after ``import keras``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType

# Every module that defines a registered class (tests/test_loading.py checks the list).
MODULES = (
    "vqkeras.layers",               # the quantizers, Spectrogram, QuantizerMetricsModel/Sequential
    "vqkeras.experiments.models",   # VQVAE, Autoencoder, DepthToSpace, SpaceToDepth
    "vqkeras.losses",               # SpectrogramStructureLoss
)
SMALL_MACHINE_CPUS = 2  # at or below this, torch gets one thread unless told otherwise
_TORCH_OPTIMIZERS = "keras.src.backend.torch.optimizers."


def register() -> None:
    """Import every module that defines a registered vqkeras class (idempotent)."""
    for name in MODULES:
        importlib.import_module(name)


def torch_threads() -> int | None:
    """The intra-op thread count vqkeras gives torch, or None to leave torch's default."""
    chosen = os.environ.get("VQKERAS_TORCH_THREADS", "").strip()
    if chosen:
        try:
            count = int(chosen)
        except ValueError:
            from vqkeras.errors import ConfigError  # a ValueError; the CLI prints it in one line

            raise ConfigError(f"VQKERAS_TORCH_THREADS must be a whole number (0: torch's default). "
                              f"Received: {chosen!r}") from None
        return count if count > 0 else None
    if os.environ.get("OMP_NUM_THREADS"):  # the user chose; torch reads it itself
        return None
    return 1 if (os.cpu_count() or 1) <= SMALL_MACHINE_CPUS else None


def on_keras_loaded() -> None:
    """Register vqkeras's classes and, on torch, set its thread count."""
    register()
    keras = sys.modules["keras"]
    if keras.backend.backend() == "torch":
        threads = torch_threads()
        if threads is not None:
            import torch

            torch.set_num_threads(threads)


def run_when_keras_loads() -> None:
    """Call `on_keras_loaded` now if Keras is imported, else right after ``import keras``."""
    if "keras" in sys.modules:
        on_keras_loaded()
    elif not any(isinstance(f, _KerasImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Finds ``keras`` with the usual path finder and wraps its loader (one shot)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _SetupLoader(spec.loader)
        return spec


class _SetupLoader(importlib.abc.Loader):
    """Keras's own loader, then `on_keras_loaded`."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        on_keras_loaded()

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: Keras's loader answers
        return getattr(self._loader, name)


def portable_compile_config(config: dict) -> dict:
    """A model's compile config with torch's optimizer classes named by their public name.

    On the torch backend `keras.optimizers.Adam(...)` builds a
    ``keras.src.backend.torch.optimizers.torch_adam.Adam``, and Keras saves that
    module path. Loading it on another backend imports torch for it (and
    TensorFlow crashes when torch is imported after it) or gives a torch
    optimizer. The public name (``keras.optimizers`` + ``Adam``) resolves to the
    loading backend's own class, with the same configuration and variables.
    """
    def fix(node):
        if isinstance(node, dict):
            node = {k: fix(v) for k, v in node.items()}
            module = node.get("module")
            if isinstance(module, str) and module.startswith(_TORCH_OPTIMIZERS):
                node["module"] = "keras.optimizers"
            return node
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return fix(config)
