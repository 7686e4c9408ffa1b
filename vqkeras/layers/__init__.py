"""Keras 3 layers of vqkeras (registered serializable under ``vqkeras``)."""

from vqkeras.layers.residual_vector_quantizer import ResidualVectorQuantizer
from vqkeras.layers.spectrogram import Spectrogram
from vqkeras.layers.vector_quantizer import VectorQuantizer

__all__ = ["ResidualVectorQuantizer", "Spectrogram", "VectorQuantizer"]
