"""The thesis models: encoder/decoder blocks, `VQVAE` and the `Autoencoder` baseline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vqkeras.experiments.models.blocks import build_decoder, build_encoder, residual_stack
from vqkeras.experiments.models.resampling import DepthToSpace, SpaceToDepth
from vqkeras.experiments.models.vqvae import VQVAE, Autoencoder, compile_model, sum_squared_error

if TYPE_CHECKING:
    from vqkeras.experiments.config import ModelConfig

__all__ = ["Autoencoder", "DepthToSpace", "SpaceToDepth", "VQVAE", "build_decoder", "build_encoder",
           "build_model", "compile_model", "load_model", "residual_stack", "sum_squared_error"]


def build_model(config: ModelConfig, input_shape) -> VQVAE | Autoencoder:
    """Build (not compile) the model a config's ``model`` section describes.

    Parameters
    ----------
    config : vqkeras.experiments.config.ModelConfig
    input_shape : (height, width, channels)
        From `vqkeras.experiments.config.input_shape`.
    """
    common = dict(num_hiddens=config.num_hiddens, num_residual_layers=config.num_residual_layers,
                  num_residual_hiddens=config.num_residual_hiddens, strides=config.strides,
                  embedding_dim=config.embedding_dim, output_activation=config.output_activation,
                  upsampling=config.upsampling, downsampling=config.downsampling)
    if config.kind == "autoencoder":
        return Autoencoder(input_shape, **common)
    return VQVAE(input_shape, num_embeddings=config.num_embeddings, quantizer=config.quantizer,
                 num_stages=config.num_stages, quantizer_dropout=config.quantizer_dropout,
                 ema=config.ema, decay=config.decay, beta=config.beta,
                 dead_code_threshold=config.dead_code_threshold, initializer=config.initializer,
                 levels=config.levels, entropy_weight=config.entropy_weight, **common)


def load_model(path: str | Path, *, compile: bool = False) -> VQVAE | Autoencoder:
    """Load a `.keras` file written by `vqkeras.experiments.training.train` (any backend)."""
    import keras

    import vqkeras.layers  # noqa: F401  (registers the quantizer layers)

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    return keras.saving.load_model(path, compile=compile)
