"""SpaceToDepth / DepthToSpace and the models' `upsampling` / `downsampling` options."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
import pytest

from tests.layer_testing import run_layer_test
from vqkeras.experiments.config import load_config
from vqkeras.experiments.models import (
    VQVAE,
    Autoencoder,
    DepthToSpace,
    SpaceToDepth,
    build_model,
    compile_model,
)
from vqkeras.experiments.models.blocks import downsample, upsample

SHAPE = (32, 16, 1)
SMALL = dict(num_hiddens=8, num_residual_layers=1, num_residual_hiddens=4)


@pytest.mark.backend
@pytest.mark.parametrize("block", [(2, 1)])
def test_space_to_depth_layer(tmp_path, block):
    x = np.random.default_rng(0).random((2, 8, 6, 3)).astype("float32")
    run_layer_test(SpaceToDepth, {"block_size": block}, x, tmp_path=tmp_path,
                   expected_output_shape=(2, 8 // block[0], 6 // block[1], 3 * block[0] * block[1]),
                   expected_num_trainable_weights=0)


@pytest.mark.backend
@pytest.mark.parametrize("block", [(2, 2)])
def test_depth_to_space_layer(tmp_path, block):
    x = np.random.default_rng(0).random((2, 4, 3, 8)).astype("float32")
    run_layer_test(DepthToSpace, {"block_size": block}, x, tmp_path=tmp_path,
                   expected_output_shape=(2, 4 * block[0], 3 * block[1], 8 // (block[0] * block[1])),
                   expected_num_trainable_weights=0)


@pytest.mark.backend
def test_depth_to_space_inverts_space_to_depth_and_places_blocks():
    x = np.arange(2 * 4 * 6 * 3, dtype="float32").reshape(2, 4, 6, 3)
    packed = keras.ops.convert_to_numpy(SpaceToDepth((2, 3))(x))
    assert packed.shape == (2, 2, 2, 18)
    # Channel block (i, j) of output pixel (h, w) is input pixel (2h + i, 3w + j).
    np.testing.assert_array_equal(packed[1, 1, 0, (1 * 3 + 2) * 3:(1 * 3 + 2) * 3 + 3], x[1, 3, 2])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(DepthToSpace((2, 3))(packed)), x)
    with pytest.raises(ValueError, match="divisible"):
        SpaceToDepth(2)(np.zeros((1, 3, 4, 1), "float32"))
    with pytest.raises(ValueError, match="block_size"):
        DepthToSpace(0)


def _grads(layer_fn, in_shape):
    """Gradient norms of the loss w.r.t. the input and every weight, through keras.ops."""
    inputs = keras.Input(in_shape)
    model = keras.Model(inputs, layer_fn(inputs))
    x = np.random.default_rng(1).random((2, *in_shape)).astype("float32")
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def loss(weights, x):
            y, _ = model.stateless_call(weights, [], x)
            return keras.ops.sum(y * y)

        weights = [v.value for v in model.trainable_variables]
        gw, gx = jax.grad(loss, argnums=(0, 1))(weights, x)
        grads = [np.asarray(g) for g in gw]
        gx = np.asarray(gx)
    elif backend == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        loss = torch.sum(model(xt) ** 2)
        weights = [v.value for v in model.trainable_variables]
        *grads, gx = torch.autograd.grad(loss, [*weights, xt])
        grads, gx = [g.numpy() for g in grads], gx.numpy()
    else:
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = model(xt)
            loss = tf.reduce_sum(y * y)
        *grads, gx = tape.gradient(loss, [*model.trainable_variables, xt])
        grads, gx = [g.numpy() for g in grads], gx.numpy()
    return model.output_shape, model.count_params(), grads, gx


@pytest.mark.backend
@pytest.mark.parametrize("mode", ["transpose", "subpixel", "resize"])
@pytest.mark.parametrize("stride", [(2, 2), (2, 1)])
def test_upsample_replacements_shape_params_and_gradients(mode, stride):
    shape, params, grads, gx = _grads(
        lambda x: upsample(x, 5, stride, mode, activation="relu", name="up"), (6, 4, 3))
    assert shape == (None, 6 * stride[0], 4 * stride[1], 5)  # same shape as the transposed conv
    reference = 4 * 4 * 3 * 5 + 5
    # Sub-pixel: 2x2 (stride 2) or 2x4 (stride 1) taps per phase: the 4x4 kernel's weights.
    extra_bias = 5 * (stride[0] * stride[1] - 1)  # sub-pixel: one bias per output phase
    assert params == reference or (mode == "subpixel" and params - reference == extra_bias)
    assert all(np.all(np.isfinite(g)) and np.abs(g).sum() > 0 for g in grads)
    assert np.abs(gx).sum() > 0


@pytest.mark.backend
@pytest.mark.parametrize("mode", ["strided", "space_to_depth"])
def test_downsample_replacement_shape_params_and_gradients(mode):
    shape, params, grads, gx = _grads(lambda x: downsample(x, 5, (2, 2), mode, name="down"), (8, 6, 3))
    assert shape == (None, 4, 3, 5)
    assert params == 4 * 4 * 3 * 5 + 5  # a 2x2 conv on 4x the channels: the same weights
    assert all(np.all(np.isfinite(g)) and np.abs(g).sum() > 0 for g in grads)
    assert np.abs(gx).sum() > 0


def _images():
    t = np.linspace(0, 1, SHAPE[0])[:, None]
    f = np.linspace(0, 1, SHAPE[1])[None, :]
    x = [0.5 + 0.25 * np.sin(7 * t + a) * np.cos(5 * f + a) for a in range(4)]
    return np.stack(x)[..., None].astype("float32")


@pytest.mark.backend
@pytest.mark.parametrize(("up", "down"), [("subpixel", "space_to_depth")])
def test_models_with_replaced_resampling_train_and_round_trip(tmp_path, up, down):
    images = _images()
    model = VQVAE(SHAPE, embedding_dim=4, num_embeddings=8, upsampling=up, downsampling=down,
                  strides=[[2, 2], [2, 1]], **SMALL)
    baseline = VQVAE(SHAPE, embedding_dim=4, num_embeddings=8, strides=[[2, 2], [2, 1]], **SMALL)
    assert model.latent_shape == baseline.latent_shape == (8, 8)
    assert abs(model.count_params() - baseline.count_params()) <= 0.02 * baseline.count_params()
    compile_model(model, learning_rate=3e-3)
    history = model.fit(images, images, batch_size=4, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]  # it learns
    out = keras.ops.convert_to_numpy(model(images, training=False))
    assert out.shape == images.shape
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, compile=False)
    assert reloaded.get_config()["upsampling"] == up and reloaded.get_config()["downsampling"] == down
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(images, training=False)), out,
                               atol=1e-5)
    np.testing.assert_array_equal(reloaded.encode(images), model.encode(images))


@pytest.mark.backend
def test_saved_config_without_the_keys_means_the_thesis_layers(tmp_path):
    """Models saved before the options existed (no keys) rebuild with transposed/strided convs."""
    model = Autoencoder(SHAPE, embedding_dim=2, **SMALL)
    config = model.get_config()
    assert (config["upsampling"], config["downsampling"]) == ("transpose", "strided")
    del config["upsampling"], config["downsampling"]
    old = Autoencoder.from_config(config)
    kinds = {type(layer).__name__ for layer in old.decoder.layers + old.encoder.layers}
    assert "Conv2DTranspose" in kinds and not kinds & {"DepthToSpace", "SpaceToDepth"}
    old.set_weights(model.get_weights())
    images = _images()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(old(images)),
                               keras.ops.convert_to_numpy(model(images)), atol=1e-6)


def test_shipped_codec_model_uses_the_thesis_layers():
    """The codec model in vqkeras/assets uses transposed/strided convolutions (the
    thesis layers): its config has no resampling keys or their thesis values."""
    from importlib.resources import files

    from vqkeras.codec.codec_model import BUNDLE_MODEL

    path = files("vqkeras") / "assets" / BUNDLE_MODEL
    with zipfile.ZipFile(str(path)) as archive:
        config = json.loads(archive.read("config.json"))["config"]
    assert config.get("upsampling", "transpose") == "transpose"
    assert config.get("downsampling", "strided") == "strided"


def test_config_keys_and_errors():
    cfg = load_config({"name": "x", "model": {"upsampling": "subpixel", "downsampling": "space_to_depth"}})
    model = build_model(cfg.model, (16, 8, 1))
    assert model.get_config()["upsampling"] == "subpixel"
    assert load_config({"name": "x"}).model.upsampling == "transpose"
    with pytest.raises(Exception, match="upsampling"):
        load_config({"name": "x", "model": {"upsampling": "pixelshuffle"}})
    with pytest.raises(ValueError, match="downsampling"):
        VQVAE(SHAPE, downsampling="pool", **SMALL)
