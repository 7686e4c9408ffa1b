"""ResidualVectorQuantizer: contract, more stages -> lower error on real spectrogram frames, dropout."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.layer_testing import run_layer_test, to_numpy

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def frames(notes):
    """Log-magnitude frames of the real notes, (N, 16) after a fixed random projection."""
    from vqkeras.layers import Spectrogram

    db = to_numpy(Spectrogram(frame_length=256, frame_step=128, mode="db")(notes[:, :32000]))
    flat = (db.reshape(-1, db.shape[-1]) + 80.0) / 80.0
    proj = np.random.default_rng(0).normal(size=(flat.shape[1], 16)).astype("float32") / np.sqrt(flat.shape[1])
    return (flat @ proj).astype("float32")


def test_layer_contract(rng, tmp_path):
    from vqkeras.layers import ResidualVectorQuantizer

    x = rng.normal(size=(4, 5, 8)).astype("float32")
    run_layer_test(ResidualVectorQuantizer, dict(num_stages=3, num_embeddings=16, embedding_dim=8, seed=0,
                                                 quantizer_dropout=0.5, ema=True),
                   x, expected_output_shape=(4, 5, 8), tmp_path=tmp_path, expected_num_losses=3)


def test_more_stages_lower_error_on_spectrogram_frames(frames):
    from vqkeras.layers import ResidualVectorQuantizer

    rvq = ResidualVectorQuantizer(4, 32, frames.shape[1], ema=True, initializer="first_batch", seed=0)
    for _ in range(3):
        rvq(frames, training=True)  # data init on the first call, then EMA refinement
    errors = []
    for n in range(1, 5):
        codes = rvq.encode(frames, num_stages=n)
        assert tuple(codes.shape) == (frames.shape[0], n)
        recon = to_numpy(rvq.decode(codes))
        np.testing.assert_allclose(recon, to_numpy(rvq(frames, num_stages=n)), atol=1e-4)
        errors.append(float(np.mean((frames - recon) ** 2)))
    assert all(b < 0.9 * a for a, b in zip(errors, errors[1:])), errors


def test_quantizer_dropout_uses_fewer_stages_sometimes(rng):
    from vqkeras.layers import ResidualVectorQuantizer

    x = rng.normal(size=(64, 4)).astype("float32")
    rvq = ResidualVectorQuantizer(3, 8, 4, quantizer_dropout=1.0, seed=0)
    full = to_numpy(rvq(x))
    partial = {n: to_numpy(rvq.decode(rvq.encode(x, num_stages=n))) for n in (1, 2, 3)}
    seen = set()
    for _ in range(12):
        out = to_numpy(rvq(x, training=True))
        match = [n for n, p in partial.items() if np.allclose(out, p, atol=1e-5)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == {1, 2, 3}
    np.testing.assert_allclose(full, partial[3], atol=1e-5)  # inference always uses all stages


def test_keras_round_trip_restores_every_codebook(rng, tmp_path):
    from vqkeras.layers import ResidualVectorQuantizer

    x = rng.normal(size=(32, 6)).astype("float32")
    inputs = keras.Input((6,))
    rvq = ResidualVectorQuantizer(3, 16, 6, initializer="first_batch", seed=1, name="rvq")
    model = keras.Model(inputs, rvq(inputs))
    rvq(x, training=True)
    model.save(tmp_path / "rvq.keras")
    reloaded = keras.saving.load_model(tmp_path / "rvq.keras").get_layer("rvq")
    for a, b in zip(rvq.stages, reloaded.stages):
        np.testing.assert_array_equal(to_numpy(a.codebook), to_numpy(b.codebook))
    np.testing.assert_array_equal(to_numpy(reloaded.encode(x)), to_numpy(rvq.encode(x)))


def test_bad_arguments_and_inputs(rng):
    from vqkeras.layers import ResidualVectorQuantizer

    with pytest.raises(ValueError, match="num_stages=0"):
        ResidualVectorQuantizer(0, 8, 4)
    with pytest.raises(ValueError, match="quantizer_dropout=1.5"):
        ResidualVectorQuantizer(2, 8, 4, quantizer_dropout=1.5)
    rvq = ResidualVectorQuantizer(2, 8, 4)
    x = rng.normal(size=(3, 4)).astype("float32")
    with pytest.raises(ValueError, match="num_stages=3"):
        rvq.encode(x, num_stages=3)
    with pytest.raises(ValueError, match=r"shape=\(3, 5\)"):
        rvq.decode(np.zeros((3, 5), "int32"))
    with pytest.raises(ValueError, match="float vectors.*int32"):
        rvq(np.zeros((3, 4), "int32"))
