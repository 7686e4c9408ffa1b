"""vqkeras: vector-quantised autoencoders for audio spectrogram compression.

Keras 3 layers (`VectorQuantizer`, `ResidualVectorQuantizer`, `Spectrogram`),
phase reconstruction (`invert_magnitude`, `griffin_lim`), and the experiment,
report and codec tooling built on them. Set ``KERAS_BACKEND`` (``jax``,
``tensorflow`` or ``torch``) before importing.

Public names are imported lazily, so ``import vqkeras`` (and the command line)
stays fast and does not import Keras until a layer is used. The Keras classes
are registered as soon as Keras is imported (`vqkeras.keras_setup`), so
``import vqkeras`` is enough for `keras.models.load_model` to load a saved
vqkeras model.
"""

from __future__ import annotations

import importlib

from vqkeras import keras_setup as _keras_setup

__version__ = "0.1.0"

_LAZY = {
    "VectorQuantizer": "vqkeras.layers.vector_quantizer",
    "QuantizerMetricsModel": "vqkeras.layers.quantizer_base",
    "QuantizerMetricsSequential": "vqkeras.layers.quantizer_base",
    "QuantizerMetricsMixin": "vqkeras.layers.quantizer_base",
    "update_quantizer_metrics": "vqkeras.layers.quantizer_base",
    "ResidualVectorQuantizer": "vqkeras.layers.residual_vector_quantizer",
    "FiniteScalarQuantizer": "vqkeras.layers.finite_scalar_quantizer",
    "LookupFreeQuantizer": "vqkeras.layers.lookup_free_quantizer",
    "Spectrogram": "vqkeras.layers.spectrogram",
    "griffin_lim": "vqkeras.phase.fast_griffin_lim",
    "invert_magnitude": "vqkeras.phase.gradient_inversion",
    "AudioReconstructionCallback": "vqkeras.phase.callback",
    "spectral_convergence_db": "vqkeras.metrics",
    "log_spectral_distance": "vqkeras.metrics",
    "snr_db": "vqkeras.metrics",
    "read_wav": "vqkeras.audio_io",
    "write_wav": "vqkeras.audio_io",
    "SpectrogramConfig": "vqkeras.features",
    "load_config": "vqkeras.experiments.config",
    "train": "vqkeras.experiments.training",
    "evaluate": "vqkeras.experiments.evaluation",
    "predict": "vqkeras.experiments.prediction",
    "compress": "vqkeras.codec",
    "decompress": "vqkeras.codec",
}

__all__ = sorted(_LAZY) + ["__version__"]

_keras_setup.run_when_keras_loads()


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vqkeras' has no attribute {name!r}")


def __dir__():
    return __all__
