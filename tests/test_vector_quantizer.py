"""VectorQuantizer: contract, straight-through gradient, losses, EMA, restarts, init, errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.layer_testing import run_layer_test, to_numpy

pytestmark = pytest.mark.backend


def _clusters(rng, n=512, k=8, dim=4, spread=0.05):
    """`n` points around `k` well-separated centres (the data a codebook should cover)."""
    centres = rng.normal(size=(k, dim)).astype("float32") * 3.0
    labels = rng.integers(0, k, n)
    return centres, (centres[labels] + spread * rng.normal(size=(n, dim))).astype("float32")


@pytest.mark.parametrize("kwargs", [dict(), dict(ema=True, dead_code_threshold=2, initializer="kmeans++"),
                                    dict(initializer="first_batch", dead_code_threshold=1)])
def test_layer_contract(rng, tmp_path, kwargs):
    from vqkeras.layers import VectorQuantizer

    x = rng.normal(size=(4, 6, 8)).astype("float32")
    run_layer_test(VectorQuantizer, dict(num_embeddings=16, embedding_dim=8, seed=0, **kwargs), x,
                   expected_output_shape=(4, 6, 8), tmp_path=tmp_path,
                   expected_num_trainable_weights=0 if kwargs.get("ema") else 1, expected_num_losses=1)


def test_encode_decode_invariant_and_nearest_code(rng):
    from vqkeras.layers import VectorQuantizer

    vq = VectorQuantizer(32, 5, seed=1)
    z = rng.normal(size=(3, 7, 11, 5)).astype("float32")
    codes = to_numpy(vq.encode(z))
    assert codes.shape == (3, 7, 11) and codes.dtype == np.int32
    np.testing.assert_allclose(to_numpy(vq(z)), to_numpy(vq.decode(codes)), atol=1e-5)
    codebook = to_numpy(vq.codebook)
    brute = ((z[..., None, :] - codebook) ** 2).sum(-1).argmin(-1)
    np.testing.assert_array_equal(codes, brute)


@pytest.mark.parametrize("ema", [False, True])
def test_commitment_and_codebook_losses(rng, ema):
    from vqkeras.layers import VectorQuantizer

    vq = VectorQuantizer(16, 4, beta=0.5, ema=ema, seed=2)
    z = rng.normal(size=(64, 4)).astype("float32")
    q = to_numpy(vq.decode(vq.encode(z)))
    vq(z)
    (loss,) = vq.losses
    mse = np.mean((z - q) ** 2)
    expected = 0.5 * mse if ema else 1.5 * mse  # the codebook term only without EMA
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


def test_gradient_reaches_encoder_straight_through(rng):
    from vqkeras.layers import VectorQuantizer

    z = rng.normal(size=(32, 4)).astype("float32")
    inputs = keras.Input((4,))
    encoder = keras.layers.Dense(4, name="encoder")
    vq = VectorQuantizer(8, 4, seed=0, name="vq")
    model = keras.Model(inputs, keras.layers.Dense(4)(vq(encoder(inputs))))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    before = to_numpy(encoder.kernel).copy()
    model.train_on_batch(z, z)
    assert np.abs(to_numpy(encoder.kernel) - before).max() > 1e-4


def _fit_far_codebook(x, centres, **kwargs):
    """Train a bare quantiser whose codebook starts far from the data; return it and the history."""
    from vqkeras.layers import VectorQuantizer
    from vqkeras.layers.vector_quantizer import QuantizerMetricsModel

    inputs = keras.Input((x.shape[1],))
    vq = VectorQuantizer(16, x.shape[1], seed=3, name="vq", **kwargs)
    model = QuantizerMetricsModel(inputs, vq(inputs))
    # A bad initialisation: every code far away on one side, so one code wins all.
    far = np.random.default_rng(1).normal(size=(16, x.shape[1])).astype("float32") * 0.1 + 20.0
    vq.embeddings.assign(far)
    if kwargs.get("ema"):
        vq.ema_embedding_sum.assign(far)
    model.compile(keras.optimizers.Adam(0.05), "mse")
    history = model.fit(x, x, batch_size=128, epochs=8, verbose=0, shuffle=False)
    return vq, model, history.history


def test_ema_and_dead_code_restart_raise_usage(rng, tmp_path):
    centres, x = _clusters(rng)
    plain, _, plain_hist = _fit_far_codebook(x, centres)
    revived, model, hist = _fit_far_codebook(x, centres, ema=True, dead_code_threshold=2)
    plain_usage = plain.codebook_usage(x)
    usage = revived.codebook_usage(x)
    # Perplexity and usage reach the fit logs on every backend.
    assert {"vq_perplexity", "vq_usage"} <= set(hist)
    assert plain_hist["vq_usage"][-1] == pytest.approx(1 / 16)
    assert hist["vq_usage"][-1] > 0.4
    assert plain_usage["usage"] == pytest.approx(1 / 16)
    assert usage["usage"] >= 0.5 and usage["perplexity"] > 6.0
    # Most clusters got a code of their own, close to the centre (a code
    # shared by two clusters is used, so it is never restarted).
    def covered(vq):
        codebook = to_numpy(vq.codebook)
        return int((np.sqrt(((centres[:, None] - codebook[None]) ** 2).sum(-1)).min(1) < 0.5).sum())

    assert covered(plain) <= 1
    assert covered(revived) >= 6
    np.testing.assert_allclose(float(revived.last_usage.numpy()), hist["vq_usage"][-1], atol=0.2)

    # .keras round trip on this backend: identical codes.
    path = tmp_path / "vq.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(to_numpy(reloaded.get_layer("vq").encode(x)), to_numpy(revived.encode(x)))


@pytest.mark.parametrize("initializer", ["first_batch", "kmeans++"])
def test_data_initializers_place_codes_on_data(rng, initializer):
    from vqkeras.layers import VectorQuantizer

    centres, x = _clusters(rng, n=256)
    vq = VectorQuantizer(16, 4, initializer=initializer, seed=4)
    vq(x[:8])  # inference does not initialise
    vq.embeddings.assign(np.full((16, 4), 20.0, "float32"))
    vq(x, training=True)
    codebook = to_numpy(vq.codebook)
    to_data = np.sqrt(((codebook[:, None] - x[None]) ** 2).sum(-1)).min(1)
    assert to_data.max() < 1.0  # every code moved onto (or next to) a data point
    covered = np.sqrt(((centres[:, None] - codebook[None]) ** 2).sum(-1)).min(1)
    if initializer == "kmeans++":
        assert covered.max() < 0.5  # k-means++ covers every cluster
    before = codebook.copy()
    vq(x[::-1], training=True)  # the second training call keeps the codebook
    np.testing.assert_allclose(to_numpy(vq.codebook), before, atol=1e-2)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(num_embeddings=0), "num_embeddings=0"), (dict(decay=1.0), "decay=1.0"),
     (dict(initializer="zeros"), "initializer='zeros'"), (dict(dead_code_threshold=-1), "dead_code_threshold=-1"),
     (dict(beta=-0.1), "beta=-0.1")],
)
def test_bad_arguments_name_the_value(kwargs, match):
    from vqkeras.layers import VectorQuantizer

    with pytest.raises(ValueError, match=match):
        VectorQuantizer(**{"num_embeddings": 8, "embedding_dim": 4, **kwargs})


def test_bad_inputs_give_clear_errors(rng):
    from vqkeras.layers import VectorQuantizer

    vq = VectorQuantizer(8, 4)
    with pytest.raises(ValueError, match=r"embedding_dim=4.*shape=\(2, 3, 5\)"):
        vq(rng.normal(size=(2, 3, 5)).astype("float32"))
    vq(rng.normal(size=(2, 4)).astype("float32"))
    with pytest.raises(ValueError, match="float vectors.*int32"):
        vq(np.zeros((2, 4), "int32"))
    with pytest.raises(ValueError, match=r"embedding_dim=4.*shape=\(2, 3\)"):
        vq.encode(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="integer indices"):
        vq.decode(np.zeros((2,), "float32"))


def test_statistics_logged_for_validation_too(rng):
    """fit logs perplexity and usage of the validation batches, not zeros."""
    from vqkeras.layers.vector_quantizer import QuantizerMetricsModel, VectorQuantizer

    _, x = _clusters(rng, n=128)
    inputs = keras.Input((4,))
    outputs = VectorQuantizer(16, 4, ema=True, initializer="kmeans++", name="vq")(inputs)
    model = QuantizerMetricsModel(inputs, outputs)
    model.compile("adam", "mse")
    hist = model.fit(x, x, validation_data=(x[:64], x[:64]), epochs=1, batch_size=64, verbose=0).history
    # k-means++ on 8 clusters uses several codes: perplexity > 2 on both splits.
    assert hist["vq_perplexity"][0] > 2.0 and hist["val_vq_perplexity"][0] > 2.0
    assert 0.0 < hist["val_vq_usage"][0] <= 1.0
    evaluated = model.evaluate(x, x, verbose=0, return_dict=True)
    assert evaluated["vq_perplexity"] > 2.0
