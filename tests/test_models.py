"""VQVAE / Autoencoder: shapes, encode/decode invariants, `.keras` round trip, fit logs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from vqkeras.experiments.config import latent_bits, latent_shape, load_config
from vqkeras.experiments.models import VQVAE, Autoencoder, build_model, compile_model, load_model

SHAPE = (32, 16, 1)  # a small time-first "spectrogram image"
SMALL = dict(num_hiddens=8, num_residual_layers=1, num_residual_hiddens=4)


@pytest.fixture(scope="module")
def images():
    # Smooth structured images in [0, 1] (not noise): sums of two sinusoids.
    t = np.linspace(0, 1, SHAPE[0])[:, None]
    f = np.linspace(0, 1, SHAPE[1])[None, :]
    phases = np.random.default_rng(0).uniform(0, 6, size=(6, 2))
    x = [0.5 + 0.25 * np.sin(7 * t + a) * np.cos(5 * f + b) for a, b in phases]
    return np.stack(x)[..., None].astype("float32")


@pytest.mark.backend
def test_vqvae_shapes_and_encode_decode_invariant(images):
    model = VQVAE(SHAPE, embedding_dim=4, num_embeddings=16, strides=[[2, 2], [2, 1]], **SMALL)
    assert model.latent_shape == (8, 8)
    out = keras.ops.convert_to_numpy(model(images, training=False))
    assert out.shape == images.shape
    assert model.output_activation == "linear"  # the thesis; metrics clip to [0, 1]
    codes = model.encode(images)
    assert codes.shape == (6, 8, 8) and codes.dtype == np.int32
    assert codes.min() >= 0 and codes.max() < 16
    # The model's inference output is exactly the decoded code indices.
    np.testing.assert_allclose(model.decode_indices(codes), out, atol=1e-5)
    with pytest.raises(ValueError, match="indices must have shape"):
        model.decode_indices(codes[:, :4])


@pytest.mark.backend
def test_residual_vqvae_encodes_stages(images):
    model = VQVAE(SHAPE, embedding_dim=4, num_embeddings=8, quantizer="rvq", num_stages=3, **SMALL)
    codes = model.encode(images)
    assert codes.shape == (6, 8, 4, 3)
    assert model.encode(images, num_stages=2).shape == (6, 8, 4, 2)
    np.testing.assert_array_equal(model.encode(images, num_stages=2), codes[..., :2])
    out = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(model.decode_indices(codes), out, atol=1e-5)
    assert model.decode_indices(codes[..., :1]).shape == images.shape
    with pytest.raises(ValueError, match="num_stages"):
        model.encode(images, num_stages=4)


@pytest.mark.backend
def test_vqvae_keras_round_trip(tmp_path, images):
    model = VQVAE(SHAPE, embedding_dim=4, num_embeddings=16, **SMALL)
    compile_model(model, learning_rate=1e-3)
    model.fit(images, images, batch_size=3, epochs=1, verbose=0)  # moves weights and EMA codebook
    path = tmp_path / "vqvae.keras"
    model.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, VQVAE) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.encode(images), model.encode(images))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(images)),
                               keras.ops.convert_to_numpy(model(images)), atol=1e-6)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.keras")


@pytest.mark.backend
def test_fit_logs_loss_mse_and_quantizer_metrics(images):
    model = VQVAE(SHAPE, embedding_dim=4, num_embeddings=16, **SMALL)
    compile_model(model, learning_rate=1e-3)
    logs = model.fit(images, images, batch_size=3, epochs=1, verbose=0).history
    for key in ("loss", "mse", "sse", "vq_perplexity", "vq_usage"):
        assert key in logs and np.isfinite(logs[key][0]), key
    assert 1.0 <= logs["vq_perplexity"][0] <= 16.0
    # loss = MSE + the quantizer's commitment loss (>= 0).
    assert logs["loss"][0] >= logs["mse"][0] - 1e-6
    np.testing.assert_allclose(logs["sse"][0], logs["mse"][0] * np.prod(SHAPE), rtol=1e-4)


@pytest.mark.backend
def test_cosine_schedule_decays_to_the_floor(images):
    from vqkeras.experiments.models.vqvae import COSINE_FLOOR

    model = VQVAE(SHAPE, embedding_dim=4, num_embeddings=16, **SMALL)
    compile_model(model, learning_rate=1e-2, schedule="cosine", total_steps=4)
    rate = model.optimizer.learning_rate  # the schedule's value at the current step
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(rate)), 1e-2, rtol=1e-6)
    model.fit(images, images, batch_size=3, epochs=1, verbose=0)  # 2 of the 4 steps: halfway
    halfway = 1e-2 * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
                               halfway, rtol=1e-5)
    model.fit(images, images, batch_size=3, epochs=2, verbose=0)  # past the end: holds the floor
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
                               1e-2 * COSINE_FLOOR, rtol=1e-5)
    with pytest.raises(ValueError, match="needs total_steps"):
        compile_model(model, learning_rate=1e-3, schedule="cosine")
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        compile_model(model, learning_rate=1e-3, schedule="step")


@pytest.mark.backend
def test_autoencoder_loss_unit_and_round_trip(tmp_path, images):
    model = Autoencoder(SHAPE, embedding_dim=2, **SMALL)
    assert model.encode(images).shape == (6, 8, 4, 2)
    compile_model(model, learning_rate=1e-3)
    model.fit(images, images, batch_size=3, epochs=1, verbose=0)
    # One loss unit for every model kind: the per-pixel MSE of the raw output;
    # the logged mse/sse are of the output clipped to the data's [0, 1].
    raw = keras.ops.convert_to_numpy(model(images))
    logs = model.evaluate(images, images, batch_size=6, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], np.mean((raw - images) ** 2), rtol=1e-4)
    clipped = np.clip(raw, 0.0, 1.0)
    np.testing.assert_allclose(logs["mse"], np.mean((clipped - images) ** 2), rtol=1e-4)
    np.testing.assert_allclose(logs["sse"], np.sum((clipped - images) ** 2) / len(images), rtol=1e-4)
    model.save(tmp_path / "ae.keras")
    loaded = load_model(tmp_path / "ae.keras")
    assert isinstance(loaded, Autoencoder)
    np.testing.assert_allclose(loaded.decode(loaded.encode(images)),
                               keras.ops.convert_to_numpy(model(images)), atol=1e-6)


def test_build_model_from_config_matches_latent_size():
    config = load_config({"name": "m", "dataset": {"name": "fashion-mnist"},
                          "model": {"num_hiddens": 8, "num_residual_hiddens": 4, "embedding_dim": 3,
                                    "num_embeddings": 32}})
    model = build_model(config.model, (28, 28, 1))
    assert isinstance(model, VQVAE) and model.latent_shape == latent_shape(config) == (7, 7)
    assert latent_bits(config) == 7 * 7 * 5
    ae = build_model(config.with_overrides({"model.kind": "autoencoder"}).model, (28, 28, 1))
    assert isinstance(ae, Autoencoder) and ae.encoder.output_shape == (None, 7, 7, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(image_shape=(30, 16, 1)), "divisible by the total strides"),
    (dict(image_shape=(32, 16)), "image_shape must be"),
    (dict(quantizer="pq"), "quantizer must be 'vq', 'rvq', 'fsq' or 'lfq'"),
    (dict(num_stages=2), "num_stages must be 1"),
    (dict(output_activation="tanh"), "output_activation"),
    (dict(strides=[[2, 0]]), "strides must be"),
])
def test_bad_model_arguments(kwargs, match):
    kwargs = {"image_shape": SHAPE, **SMALL, **kwargs}
    with pytest.raises(ValueError, match=match):
        VQVAE(kwargs.pop("image_shape"), **kwargs)
