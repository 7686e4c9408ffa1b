"""VectorQuantizer options: each does what it claims (cosine, projection, orthogonal loss,
rotation trick, heads, Gumbel sampling, mask) and bad combinations are refused."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.layer_testing import run_layer_test, to_numpy

pytestmark = pytest.mark.backend


@pytest.mark.parametrize("kwargs", [
    dict(distance="cosine", codebook_dim=4, num_heads=2, separate_codebook_per_head=True, gradient="rotation",
         orthogonal_reg_weight=0.1),
    dict(ema=True, num_heads=2, dead_code_threshold=1, initializer="kmeans++", stochastic_temperature=0.5),
])
def test_layer_contract_with_options(rng, tmp_path, kwargs):
    from vqkeras.layers import VectorQuantizer

    x = rng.normal(size=(4, 6, 8)).astype("float32")
    run_layer_test(VectorQuantizer, dict(num_embeddings=16, embedding_dim=8, seed=0, **kwargs), x,
                   expected_output_shape=(4, 6, 8), tmp_path=tmp_path, expected_num_losses=1, atol=1e-5)


@pytest.mark.parametrize("kwargs", [
    dict(distance="cosine"), dict(codebook_dim=3), dict(num_heads=4), dict(num_heads=2, separate_codebook_per_head=True),
    dict(distance="cosine", codebook_dim=6, num_heads=3, separate_codebook_per_head=True),
])
def test_call_equals_decode_of_encode(rng, kwargs):
    from vqkeras.layers import VectorQuantizer

    vq = VectorQuantizer(32, 8, seed=1, **kwargs)
    z = rng.normal(size=(3, 5, 8)).astype("float32")
    codes = to_numpy(vq.encode(z))
    heads = kwargs.get("num_heads", 1)
    assert codes.shape == ((3, 5, heads) if heads > 1 else (3, 5)) and codes.dtype == np.int32
    np.testing.assert_allclose(to_numpy(vq(z)), to_numpy(vq.decode(codes)), atol=1e-5)
    assert vq.bits_per_vector == pytest.approx(5 * heads)


def test_cosine_codes_and_outputs_have_unit_norm(rng):
    from vqkeras.layers import VectorQuantizer

    vq = VectorQuantizer(16, 4, distance="cosine", seed=0)
    z = rng.normal(size=(64, 4)).astype("float32") * 5.0
    np.testing.assert_allclose(np.linalg.norm(to_numpy(vq.codebook), axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(to_numpy(vq(z)), axis=-1), 1.0, atol=1e-5)
    # Nearest by angle: scaling an input does not change its code.
    np.testing.assert_array_equal(to_numpy(vq.encode(z)), to_numpy(vq.encode(z * 0.01)))
    book = to_numpy(vq.codebook)
    zn = z / np.linalg.norm(z, axis=-1, keepdims=True)
    np.testing.assert_array_equal(to_numpy(vq.encode(z)), (zn @ book.T).argmax(-1))


def test_codebook_dim_quantizes_in_a_learned_low_dimensional_space(rng):
    from vqkeras.layers import QuantizerMetricsModel, VectorQuantizer

    vq = VectorQuantizer(16, 8, codebook_dim=2, seed=0, name="vq")
    x = rng.normal(size=(64, 8)).astype("float32")
    vq(x)
    assert tuple(vq.codebook.shape) == (16, 2)
    # Outputs span at most the 2-dimensional image of the up-projection (+ bias).
    out = to_numpy(vq(x)) - to_numpy(vq.project_out_bias)
    assert np.linalg.matrix_rank(out, tol=1e-4) <= 2
    inputs = keras.Input((8,))
    model = QuantizerMetricsModel(inputs, vq(inputs))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    before = [to_numpy(w).copy() for w in (vq.project_in_kernel, vq.project_out_kernel)]
    model.fit(x, x, batch_size=64, epochs=1, verbose=0)
    for w, b in zip((vq.project_in_kernel, vq.project_out_kernel), before):
        assert np.abs(to_numpy(w) - b).max() > 1e-5  # both projections learn


def test_orthogonal_regularisation_adds_its_term(rng):
    from vqkeras.layers import VectorQuantizer

    z = rng.normal(size=(32, 4)).astype("float32")
    plain = VectorQuantizer(8, 4, seed=0)
    ortho = VectorQuantizer(8, 4, seed=0, orthogonal_reg_weight=2.0)
    plain(z)
    ortho(z)
    book = to_numpy(ortho.codebook)
    normed = book / np.linalg.norm(book, axis=-1, keepdims=True)
    expected = 2.0 * np.mean((normed @ normed.T - np.eye(8)) ** 2)
    np.testing.assert_allclose(float(ortho.losses[0]) - float(plain.losses[0]), expected, rtol=1e-4)


def _one_step_kernel_change(gradient, x, target):
    from vqkeras.layers import VectorQuantizer

    inputs = keras.Input((4,))
    front = keras.layers.Dense(4, kernel_initializer=keras.initializers.RandomNormal(seed=0), name="front")
    vq = VectorQuantizer(8, 4, seed=0, gradient=gradient, beta=0.0, trainable=False)
    model = keras.Model(inputs, vq(front(inputs)))
    model.compile(keras.optimizers.SGD(0.05), "mse")
    before = to_numpy(front.kernel).copy()
    model.train_on_batch(x, target)
    return to_numpy(front.kernel) - before


def test_rotation_trick_forward_is_the_code_and_gradient_differs_but_trains(rng):
    from vqkeras.layers import VectorQuantizer

    z = rng.normal(size=(16, 4)).astype("float32")
    st = VectorQuantizer(8, 4, seed=0)
    rot = VectorQuantizer(8, 4, seed=0, gradient="rotation")
    np.testing.assert_allclose(to_numpy(rot(z)), to_numpy(st(z)), atol=1e-5)

    x = rng.normal(size=(64, 4)).astype("float32")
    target = x * 0.5
    delta_st = _one_step_kernel_change("straight_through", x, target)
    delta_rot = _one_step_kernel_change("rotation", x, target)
    assert np.abs(delta_st).max() > 1e-5 and np.abs(delta_rot).max() > 1e-5
    assert not np.allclose(delta_st, delta_rot, atol=1e-6)
    # ...and still trains: an autoencoder through a learned codebook.
    data = rng.normal(size=(256, 4)).astype("float32")
    errors = {}
    for gradient in ("straight_through", "rotation"):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        vq = VectorQuantizer(16, 4, seed=0, gradient=gradient, initializer="first_batch")
        model = keras.Model(inputs, keras.layers.Dense(4)(vq(keras.layers.Dense(4)(inputs))))
        model.compile(keras.optimizers.Adam(0.02), "mse")
        first = model.evaluate(data, data, verbose=0, return_dict=True)["loss"]
        model.fit(data, data, batch_size=64, epochs=15, verbose=0)
        errors[gradient] = (first, model.evaluate(data, data, verbose=0, return_dict=True)["loss"])
    assert errors["rotation"][1] < 0.6 * errors["rotation"][0], errors
    assert errors["rotation"][1] < 1.5 * errors["straight_through"][1], errors


def test_separate_codebooks_per_head(rng):
    from vqkeras.layers import VectorQuantizer

    vq = VectorQuantizer(16, 6, num_heads=3, separate_codebook_per_head=True, seed=0)
    z = rng.normal(size=(20, 6)).astype("float32")
    codes = to_numpy(vq.encode(z))
    books = to_numpy(vq.codebook)
    assert books.shape == (3, 16, 2) and codes.shape == (20, 3)
    for h in range(3):
        brute = ((z[:, None, 2 * h:2 * h + 2] - books[h][None]) ** 2).sum(-1).argmin(-1)
        np.testing.assert_array_equal(codes[:, h], brute)
    shared = VectorQuantizer(16, 6, num_heads=3, seed=0)
    shared(z)
    assert tuple(shared.codebook.shape) == (16, 2)


def test_gumbel_sampling_in_training_only(rng):
    from vqkeras.layers import VectorQuantizer

    z = rng.normal(size=(256, 4)).astype("float32")
    vq = VectorQuantizer(16, 4, stochastic_temperature=1.0, seed=0, trainable=False)
    nearest = to_numpy(vq.decode(vq.encode(z)))
    np.testing.assert_allclose(to_numpy(vq(z, training=False)), nearest, atol=1e-6)
    sampled = to_numpy(vq(z, training=True))
    differs = np.any(np.abs(sampled - nearest) > 1e-6, axis=-1).mean()
    assert 0.05 < differs < 0.95  # some, not all, codes are drawn away from the nearest
    cold = VectorQuantizer(16, 4, stochastic_temperature=1e-4, seed=0, trainable=False)
    np.testing.assert_allclose(to_numpy(cold(z, training=True)), nearest, atol=1e-6)


def test_mask_keeps_padding_out_of_ema_losses_and_metrics(rng):
    from vqkeras.layers import VectorQuantizer

    z = rng.normal(size=(2, 10, 4)).astype("float32")
    mask = np.ones((2, 10), bool)
    mask[:, 6:] = False
    padded = z.copy()
    padded[:, 6:] = 100.0  # garbage in the padding
    kwargs = dict(num_embeddings=8, embedding_dim=4, ema=True, seed=0, beta=0.5)
    masked, clean = VectorQuantizer(**kwargs), VectorQuantizer(**kwargs)
    masked(padded, training=True, mask=mask)
    clean(z[:, :6], training=True)
    np.testing.assert_allclose(to_numpy(masked.codebook), to_numpy(clean.codebook), atol=1e-5)
    np.testing.assert_allclose(float(masked.losses[0]), float(clean.losses[0]), rtol=1e-5)
    np.testing.assert_allclose(float(masked.last_usage.numpy()), float(clean.last_usage.numpy()))
    # Keras mask propagation reaches the layer too.
    inputs = keras.Input((10, 4))
    hidden = keras.layers.Masking(100.0)(inputs)
    model = keras.Model(inputs, VectorQuantizer(**kwargs, name="vq")(hidden))
    model(padded, training=True)
    np.testing.assert_allclose(to_numpy(model.get_layer("vq").codebook), to_numpy(clean.codebook), atol=1e-5)
    # The residual quantizer hands the mask to its VQ stages.
    from vqkeras.layers import ResidualVectorQuantizer

    rvq_masked = ResidualVectorQuantizer(2, 8, 4, ema=True, seed=0)
    rvq_clean = ResidualVectorQuantizer(2, 8, 4, ema=True, seed=0)
    rvq_masked(padded, training=True, mask=mask)
    rvq_clean(z[:, :6], training=True)
    for a, b in zip(rvq_masked.stages, rvq_clean.stages):
        np.testing.assert_allclose(to_numpy(a.codebook), to_numpy(b.codebook), atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(distance="manhattan"), "distance='manhattan'"), (dict(gradient="ste"), "gradient='ste'"),
    (dict(num_heads=3), "num_heads=3"), (dict(codebook_dim=0), "codebook_dim=0"),
    (dict(separate_codebook_per_head=True), "needs num_heads > 1"),
    (dict(ema=True, orthogonal_reg_weight=0.1), "EMA codebook"),
    (dict(stochastic_temperature=-1.0), "stochastic_temperature=-1.0"),
    (dict(codebook_dim=6, num_heads=4), "quantised dimension \\(6\\)"),
])
def test_incompatible_options_raise(kwargs, match):
    from vqkeras.layers import VectorQuantizer

    with pytest.raises(ValueError, match=match):
        VectorQuantizer(**{"num_embeddings": 8, "embedding_dim": 4, **kwargs})


_DATA_PARALLEL = """
import json
import jax
import keras
import numpy as np
from vqkeras.layers import QuantizerMetricsModel, VectorQuantizer

assert len(jax.devices()) == 2, jax.devices()
x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
x[:, :4] *= 0.1  # uneven data: some codes die and get restarted


def train(distributed):
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices())
                                        if distributed else None)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    vq = VectorQuantizer(32, 8, ema=True, dead_code_threshold=1, initializer="kmeans++", num_heads=2,
                         separate_codebook_per_head=True, seed=0, name="vq")
    model = QuantizerMetricsModel(inputs, keras.layers.Dense(8, name="head")(vq(inputs)))
    model.compile(keras.optimizers.SGD(0.01), "mse")
    logs = model.fit(x, x, batch_size=64, epochs=3, shuffle=False, verbose=0).history
    shards = [np.asarray(s.data) for s in vq.embeddings.value.addressable_shards]
    return vq, logs, shards


vq1, logs1, _ = train(False)
vq2, logs2, shards = train(True)
print(json.dumps({
    "replicas": len(shards),
    "replicas_equal": all(np.array_equal(shards[0], s) and s.shape == shards[0].shape for s in shards),
    "codebook_gap": float(np.abs(np.asarray(vq1.codebook) - np.asarray(vq2.codebook)).max()),
    "restarted": float(np.asarray(vq2.steps_unused).max()),
    "codes_equal": bool(np.array_equal(np.asarray(vq1.encode(x)), np.asarray(vq2.encode(x)))),
    "usage": [logs1["vq_usage"][-1], logs2["vq_usage"][-1]],
}))
"""


def test_ema_and_restarts_consistent_under_data_parallel(tmp_path, backend):
    import os
    import subprocess
    import sys
    from pathlib import Path

    if backend != "jax":
        pytest.skip("keras.distribution.DataParallel is used on JAX only")
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", _DATA_PARALLEL], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    got = json.loads(proc.stdout.strip().splitlines()[-1])
    # Both replicas hold the whole, identical codebook, and it is the one that
    # single-device training reaches (EMA sums and restarts are global).
    assert got["replicas"] == 2 and got["replicas_equal"], got
    assert got["codebook_gap"] < 1e-4 and got["codes_equal"], got
    assert got["usage"][0] == pytest.approx(got["usage"][1], abs=1e-6)
