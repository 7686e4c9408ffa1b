"""The shared quantiser interface, per layer: contract, codes, dtypes, cross-backend reload."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.layer_testing import run_layer_test, to_numpy

pytestmark = pytest.mark.backend

# name -> (class name, constructor kwargs, input dim, codes per vector, codebook size)
CASES = {
    "fsq": ("FiniteScalarQuantizer", dict(levels=[5, 4, 3]), 3, 1, 60),
    "lfq": ("LookupFreeQuantizer", dict(embedding_dim=6), 6, 1, 64),
    "rvq_grouped": ("ResidualVectorQuantizer",
                    dict(num_stages=2, num_embeddings=16, embedding_dim=8, num_groups=2, seed=0), 8, 4, 16),
    "rvq_shared": ("ResidualVectorQuantizer",
                   dict(num_stages=3, num_embeddings=16, embedding_dim=8, shared_codebook=True, seed=0), 8, 3, 16),
    "rvq_fsq": ("ResidualVectorQuantizer",
                dict(num_stages=2, num_embeddings=None, embedding_dim=4, stage="fsq", levels=[5, 5, 5, 5]), 4, 2,
                625),
    "vq": ("VectorQuantizer", dict(num_embeddings=16, embedding_dim=8, seed=0), 8, 1, 16),
}


def _make(case, **extra):
    import vqkeras.layers

    cls_name, kwargs, *_ = CASES[case]
    return getattr(vqkeras.layers, cls_name)(**kwargs, **extra)


@pytest.mark.parametrize("name", [n for n in CASES if n != "vq"])
def test_layer_contract(rng, tmp_path, name):
    import vqkeras.layers

    cls_name, kwargs, dim, *_ = CASES[name]
    x = rng.normal(size=(4, 5, dim)).astype("float32")
    run_layer_test(getattr(vqkeras.layers, cls_name), kwargs, x, expected_output_shape=(4, 5, dim),
                   tmp_path=tmp_path)


@pytest.mark.parametrize("name", list(CASES))
def test_call_equals_decode_of_encode_and_bits(rng, name):
    _, _, dim, codes_per_vector, size = CASES[name]
    layer = _make(name)
    x = rng.normal(size=(3, 7, dim)).astype("float32")
    codes = to_numpy(layer.encode(x))
    assert codes.dtype == np.int32 and codes.min() >= 0 and codes.max() < size
    assert codes.size == 3 * 7 * codes_per_vector
    np.testing.assert_allclose(to_numpy(layer(x)), to_numpy(layer.decode(codes)), atol=1e-5)
    assert layer.codebook_size == size
    assert layer.bits_per_vector == pytest.approx(codes_per_vector * math.log2(size))


@pytest.mark.parametrize("name", list(CASES))
def test_mixed_bfloat16_policy(rng, name):
    _, _, dim, *_ = CASES[name]
    layer = _make(name, dtype="mixed_bfloat16")
    x = rng.normal(size=(2, 5, dim)).astype("float32")
    out = layer(x, training=True)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16" and tuple(out.shape) == (2, 5, dim)
    assert "int" in keras.backend.standardize_dtype(layer.encode(x).dtype)
    assert np.all(np.isfinite(to_numpy(keras.ops.cast(out, "float32"))))


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_reaches_encoder(rng, name):
    from vqkeras.layers import QuantizerMetricsModel

    _, _, dim, *_ = CASES[name]
    x = rng.normal(size=(64, dim)).astype("float32")
    inputs = keras.Input((dim,))
    encoder = keras.layers.Dense(dim, name="encoder")
    model = QuantizerMetricsModel(inputs, keras.layers.Dense(dim)(_make(name)(encoder(inputs))))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    before = to_numpy(encoder.kernel).copy()
    logs = model.fit(x, x, batch_size=64, epochs=1, verbose=0).history
    assert np.abs(to_numpy(encoder.kernel) - before).max() > 1e-5
    assert any(k.endswith("_perplexity") and v[0] >= 1.0 for k, v in logs.items())


def test_fsq_indices_cover_the_product_of_levels():
    from vqkeras.layers import FiniteScalarQuantizer

    fsq = FiniteScalarQuantizer([3, 4, 5])
    grid = to_numpy(fsq.decode(np.arange(60, dtype="int32")))
    # Every index is a distinct grid point in [-1, 1], and encoding it gives it back.
    assert len({tuple(v) for v in grid.round(6)}) == 60 and np.abs(grid).max() <= 1.0
    # Inputs sweeping a wide range reach every code: the outermost levels are reachable.
    axis = np.linspace(-6, 6, 41, dtype="float32")
    sweep = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    assert set(to_numpy(fsq.encode(sweep)).tolist()) == set(range(60))
    # Levels per dimension: 3, 4 and 5 distinct values.
    out = to_numpy(fsq(sweep))
    assert [len(np.unique(out[:, i].round(6))) for i in range(3)] == [3, 4, 5]
    assert fsq.losses == []  # no auxiliary loss


def test_lfq_codes_are_signs_and_entropy_penalty_spreads_codes(rng):
    from vqkeras.layers import LookupFreeQuantizer, QuantizerMetricsModel

    lfq = LookupFreeQuantizer(4, entropy_weight=0.0, beta=0.0)
    z = rng.normal(size=(10, 4)).astype("float32")
    np.testing.assert_array_equal(to_numpy(lfq(z)), np.where(z > 0, 1.0, -1.0))
    np.testing.assert_array_equal(to_numpy(lfq.encode(z)), ((z > 0) * 2 ** np.arange(4)).sum(-1))

    # A collapsed encoder (every input on one code): the penalty spreads the codes.
    x = rng.normal(size=(256, 4)).astype("float32")

    def usage_after(weight):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        enc = keras.layers.Dense(4, kernel_initializer=keras.initializers.RandomNormal(stddev=0.1, seed=0),
                                 bias_initializer=keras.initializers.Constant(3.0), name="enc")
        quant = LookupFreeQuantizer(4, entropy_weight=weight, beta=0.0, name="lfq")
        model = QuantizerMetricsModel(inputs, quant(enc(inputs)))
        model.compile(keras.optimizers.Adam(0.05), loss=lambda y, p: 0.0 * keras.ops.mean(p))
        model.fit(x, x, batch_size=64, epochs=15, verbose=0)
        return quant.codebook_usage(enc(x))["usage"]

    assert usage_after(0.0) <= 1 / 16
    assert usage_after(1.0) >= 0.75


def test_rvq_shared_codebook_and_groups(rng):
    from vqkeras.layers import ResidualVectorQuantizer

    shared = _make("rvq_shared")
    x = rng.normal(size=(32, 8)).astype("float32")
    shared(x)
    assert len(shared.stages) == 1 and len(shared.trainable_weights) == 1
    codes = to_numpy(shared.encode(x))
    book = to_numpy(shared.stages[0].codebook)
    np.testing.assert_allclose(book[codes].sum(1), to_numpy(shared(x)), atol=1e-5)

    grouped = _make("rvq_grouped")
    codes = to_numpy(grouped.encode(x))
    assert codes.shape == (32, 2, 2) and len(grouped.stages) == 4
    # The groups are independent: changing the second half leaves group 0's codes.
    y = x.copy()
    y[:, 4:] += 5.0
    np.testing.assert_array_equal(to_numpy(grouped.encode(y))[:, 0], codes[:, 0])
    np.testing.assert_allclose(to_numpy(grouped.decode(codes[..., :1])),
                               np.concatenate([to_numpy(grouped.stages[g * 2].decode(codes[:, g, 0]))
                                               for g in range(2)], -1), atol=1e-6)

    # Residual FSQ: each stage refines the previous grid cell.
    rfsq = ResidualVectorQuantizer(3, None, 4, stage="fsq", levels=[5, 5, 5, 5])
    z = np.tanh(rng.normal(size=(256, 4))).astype("float32") * 0.9
    errors = [float(np.mean((to_numpy(rfsq.decode(rfsq.encode(z, num_stages=n))) - z) ** 2)) for n in (1, 2, 3)]
    assert errors[1] < errors[0] / 4 and errors[2] < errors[1] / 4


@pytest.mark.parametrize("kwargs, match", [
    (dict(levels=[5, 1]), "levels"),
    (dict(levels="abc"), "levels"),
])
def test_fsq_bad_arguments(kwargs, match):
    from vqkeras.layers import FiniteScalarQuantizer

    with pytest.raises(ValueError, match=match):
        FiniteScalarQuantizer(**kwargs)
    with pytest.raises(ValueError, match="len\\(levels\\)=2"):
        FiniteScalarQuantizer([3, 3])(np.zeros((2, 3), "float32"))


@pytest.mark.parametrize("kwargs, match", [
    (dict(embedding_dim=0), "embedding_dim=0"), (dict(embedding_dim=4, temperature=0.0), "temperature=0.0"),
    (dict(embedding_dim=4, entropy_weight=-1.0), "entropy_weight=-1.0"),
])
def test_lfq_bad_arguments(kwargs, match):
    from vqkeras.layers import LookupFreeQuantizer

    with pytest.raises(ValueError, match=match):
        LookupFreeQuantizer(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_groups=3), "num_groups=3"), (dict(stage="pq"), "stage='pq'"),
    (dict(stage="fsq", levels=[5, 5]), "levels"), (dict(levels=[5] * 8), "needs stage='fsq'"),
    (dict(stage="fsq", levels=[5] * 8, shared_codebook=True), "shared_codebook"),
])
def test_rvq_bad_arguments(kwargs, match):
    from vqkeras.layers import ResidualVectorQuantizer

    with pytest.raises(ValueError, match=match):
        ResidualVectorQuantizer(**{"num_stages": 2, "num_embeddings": 16, "embedding_dim": 8, **kwargs})


_RELOAD = """
import json, sys
import numpy as np
import keras
import vqkeras.layers
model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
print(json.dumps({"backend": keras.backend.backend(),
                  "codes": {layer.name: np.asarray(layer.encode(x[..., :layer.input.shape[-1]])).tolist()
                            for layer in model.layers[1:]}}))
"""


def test_codes_identical_after_reload_on_the_other_backend(rng, tmp_path, backend):
    other = {"jax": "tensorflow", "tensorflow": "jax"}.get(backend)
    if other is None:
        pytest.skip(f"written for jax <-> tensorflow, not {backend}")
    x = rng.normal(size=(4, 6, 8)).astype("float32")
    inputs = keras.Input((6, 8))
    layers, outputs = [], []
    for name, (_, _, dim, *_) in CASES.items():
        layer = _make(name, name=name)
        layer(x[..., :dim], training=True)  # trained state (EMA, init) is part of what reloads
        layers.append(layer)
        outputs.append(layer(inputs[..., :dim]))
    model = keras.Model(inputs, outputs)
    path, xpath = tmp_path / "model.keras", tmp_path / "x.npy"
    model.save(path)
    np.save(xpath, x)
    env = {**os.environ, "KERAS_BACKEND": other}
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", _RELOAD, str(path), str(xpath)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["backend"] == other and set(got["codes"]) == set(CASES)
    for layer, (name, (_, _, dim, *_)) in zip(layers, CASES.items()):
        np.testing.assert_array_equal(np.array(got["codes"][name]), to_numpy(layer.encode(x[..., :dim])), name)
