"""Keras 3 layers of vqkeras (registered serializable under ``vqkeras``)."""

from vqkeras.layers.finite_scalar_quantizer import FiniteScalarQuantizer
from vqkeras.layers.lookup_free_quantizer import LookupFreeQuantizer
from vqkeras.layers.quantizer_base import (
    BaseQuantizer,
    QuantizerMetricsMixin,
    QuantizerMetricsModel,
    QuantizerMetricsSequential,
    update_quantizer_metrics,
)
from vqkeras.layers.residual_vector_quantizer import ResidualVectorQuantizer
from vqkeras.layers.spectrogram import Spectrogram
from vqkeras.layers.vector_quantizer import VectorQuantizer

__all__ = ["BaseQuantizer", "FiniteScalarQuantizer", "LookupFreeQuantizer", "QuantizerMetricsMixin",
           "QuantizerMetricsModel", "QuantizerMetricsSequential", "ResidualVectorQuantizer", "Spectrogram",
           "VectorQuantizer", "update_quantizer_metrics"]
