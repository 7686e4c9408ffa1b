"""`model.quantizer: vq | rvq | fsq | lfq`: the experiment model swaps quantizers by config."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from vqkeras.errors import ConfigError
from vqkeras.experiments.config import latent_bits, load_config
from vqkeras.experiments.models import build_model, compile_model

MODEL = {"num_hiddens": 8, "num_residual_layers": 1, "num_residual_hiddens": 4}
# Equal budget: 6 bits per latent vector each.
QUANTIZERS = {
    "vq": {"quantizer": "vq", "embedding_dim": 3, "num_embeddings": 64},
    "rvq": {"quantizer": "rvq", "embedding_dim": 3, "num_embeddings": 8, "num_stages": 2},
    "fsq": {"quantizer": "fsq", "embedding_dim": 3, "levels": [4, 4, 4]},
    "rfsq": {"quantizer": "fsq", "embedding_dim": 3, "levels": [2, 2, 2], "num_stages": 2},
    "lfq": {"quantizer": "lfq", "embedding_dim": 6},
}


@pytest.mark.backend
@pytest.mark.parametrize("name", list(QUANTIZERS))
def test_each_quantizer_builds_trains_and_round_trips_codes(name):
    config = load_config({"name": "q", "dataset": {"name": "fashion-mnist"}, "model": {**MODEL, **QUANTIZERS[name]}})
    assert latent_bits(config) == 7 * 7 * 6
    model = build_model(config.model, (28, 28, 1))
    compile_model(model, learning_rate=1e-3)
    x = np.random.default_rng(0).uniform(size=(8, 28, 28, 1)).astype("float32")
    logs = model.fit(x, x, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])
    assert any(k.endswith("_perplexity") for k in logs), sorted(logs)  # the model pushes quantiser metrics
    codes = model.encode(x)
    assert codes.shape[:3] == (8, 7, 7) and codes.dtype == np.int32
    assert model.quantizer.bits_per_vector == pytest.approx(6.0)
    np.testing.assert_allclose(model.decode_indices(codes), keras.ops.convert_to_numpy(model(x, training=False)), atol=1e-5)


@pytest.mark.parametrize("model, message", [
    ({"quantizer": "fsq", "embedding_dim": 3}, "model.levels: quantizer: fsq needs one level"),
    ({"quantizer": "fsq", "embedding_dim": 3, "levels": [4, 4]}, "model.levels"),
    ({"quantizer": "vq", "levels": [4, 4]}, "model.levels: only used with quantizer: fsq"),
    ({"quantizer": "lfq", "num_stages": 2}, "model.num_stages: must be 1 when model.quantizer is 'lfq'"),
    ({"quantizer": "lfq", "embedding_dim": 32}, "at most 20"),
])
def test_bad_quantizer_configs(model, message):
    with pytest.raises(ConfigError) as info:
        load_config({"name": "x", "model": model})
    assert message in str(info.value)
