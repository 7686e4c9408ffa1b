"""evaluate(): per-clip metrics, data baselines, collapse check, error per frequency, saved files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vqkeras.experiments.datasets import load_split
from vqkeras.experiments.evaluation import (baseline_images, collapse_status, evaluate,
                                            harmonic_error_ratio, load_evaluation)
from vqkeras.experiments.training import train

from conftest import FASHION_MNIST_DIR


@pytest.fixture(scope="module")
def tiny_evaluation(tiny_run):
    config, run_dir = tiny_run
    return config, evaluate(config, split="test")


@pytest.mark.backend
def test_audio_evaluation_metrics(tiny_evaluation):
    config, result = tiny_evaluation
    per_clip = result.per_clip
    assert list(per_clip.columns) == ["clip_id", "mse", "sse", "spectral_convergence_db",
                                      "log_spectral_distance_db", "snr_db", "harmonic_error_ratio"]
    assert len(per_clip) == config.dataset.max_test
    for column in ("mse", "sse", "spectral_convergence_db"):
        assert np.isfinite(per_clip[column]).all(), column
    # Waveform metrics only for the first phase_reconstruction.max_clips clips.
    limit = config.phase_reconstruction.max_clips
    assert np.isfinite(per_clip["log_spectral_distance_db"][:limit]).all()
    assert np.isfinite(per_clip["snr_db"][:limit]).all()
    assert per_clip["snr_db"][limit:].isna().all()
    np.testing.assert_allclose(per_clip["sse"] / per_clip["mse"], 124 * 128, rtol=1e-6)
    # Training helped: the model beats every baseline computed from the data.
    assert set(result.baselines) == {"zero", "mean_image", "mean_spectrum"}
    assert result.status == "ok"
    for name, base in result.baselines.items():
        assert result.summary["mse"] < base["mse"], name
        assert np.isfinite(base["spectral_convergence_db"]), name
    assert result.improvement_factor > 1
    # A silent output scores 0 dB spectral convergence: the zero baseline shows it.
    assert abs(result.baselines["zero"]["spectral_convergence_db"]) < 0.1
    # Error per frequency bin: 128 bins from 0 Hz in steps of sr / frame_length.
    assert result.error_per_frequency.shape == (128,)
    np.testing.assert_allclose(result.frequencies_hz[:2], [0.0, 16000 / 256])
    np.testing.assert_allclose(result.error_per_frequency.mean(), result.summary["mse"], rtol=1e-4)
    text = result.summary_text()
    assert "best baseline" in text and "nsynth-tiny/trained" in text and "OK" in text


@pytest.mark.backend
def test_evaluation_files_round_trip(tiny_evaluation):
    _, result = tiny_evaluation
    folder = result.run_dir / "evaluation" / "test"
    for name in ("per_clip.csv", "summary.json", "error_per_frequency.csv"):
        assert (folder / name).is_file(), name
    saved = json.loads((folder / "summary.json").read_text())
    assert saved["trained"]["mse"] == pytest.approx(result.summary["mse"])
    assert saved["baselines"]["mean_image"]["mse"] == pytest.approx(result.baselines["mean_image"]["mse"])
    assert saved["status"] == result.status
    loaded = load_evaluation(result.run_dir, "test")
    assert list(loaded.per_clip["clip_id"]) == list(result.per_clip["clip_id"])
    np.testing.assert_allclose(loaded.error_per_frequency, result.error_per_frequency, rtol=1e-6)
    assert loaded.info["latent_bits"] == result.info["latent_bits"] == 31 * 32 * 5


def test_evaluation_needs_a_trained_run(tiny_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="train the run first"):
        evaluate(tiny_config, run_dir=tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no evaluation saved"):
        load_evaluation(tmp_path / "nothing")


def test_image_dataset_evaluation(tiny_config, tmp_path):
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    config = tiny_config.with_overrides({
        "name": "fashion-tiny", "runs_root": str(tmp_path), "dataset.name": "fashion-mnist",
        "dataset.root": str(FASHION_MNIST_DIR), "dataset.max_train": 256, "dataset.max_valid": 32,
        "dataset.max_test": 64, "training.batch_size": 32, "training.learning_rate": 0.003})
    result = evaluate(config, run_dir=train(config), split="test")
    assert list(result.per_clip.columns) == ["clip_id", "mse", "sse"]
    assert result.error_per_frequency is None
    assert np.isfinite(result.per_clip["mse"]).all()
    assert set(result.baselines) == {"zero", "mean_image"}  # no mean spectrum for images
    assert result.summary["mse"] < result.best_baseline[1]


@pytest.mark.backend
def test_baselines_are_computed_from_the_data(tiny_evaluation):
    config, result = tiny_evaluation
    train_images = load_split(config, "train").images.astype("float64")
    test_images = load_split(config, "test").images.astype("float64")
    mean_image = train_images.mean(axis=0)
    mean_spectrum = mean_image.mean(axis=0, keepdims=True)  # per frequency bin, over time
    expected = {"zero": np.mean(test_images ** 2),
                "mean_image": np.mean((test_images - mean_image) ** 2),
                "mean_spectrum": np.mean((test_images - mean_spectrum) ** 2)}
    for name, value in expected.items():
        assert result.baselines[name]["mse"] == pytest.approx(value, rel=1e-5), name
    # The error reported for the run is of the output clipped to [0, 1].
    assert result.best_baseline[1] == pytest.approx(min(expected.values()), rel=1e-5)


def test_baseline_images_shapes_and_values(rng):
    train = rng.uniform(0, 1, size=(10, 6, 4, 1)).astype("float32")
    images = baseline_images(train, audio=True)
    np.testing.assert_allclose(images["mean_image"], train.mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(images["zero"], 0.0)
    spectrum = images["mean_spectrum"]
    assert spectrum.shape == (6, 4, 1)
    np.testing.assert_allclose(spectrum, np.broadcast_to(train.mean(axis=(0, 1)), (6, 4, 1)), rtol=1e-6)
    assert set(baseline_images(train, audio=False)) == {"zero", "mean_image"}


@pytest.mark.parametrize("mse, spread, expected", [
    (0.010, 0.5, "ok"),
    (0.0201, 0.5, "collapsed"),          # within 1% of the mean image's error
    (0.0499, 0.5, "collapsed"),          # within 1% of the zero image's error
    (0.030, 0.5, "worse than baseline"),
    (0.010, 0.001, "collapsed"),         # the output barely moves with the input
])
def test_collapse_status(mse, spread, expected):
    assert collapse_status(mse, {"zero": 0.05, "mean_image": 0.02}, spread) == expected


def test_harmonic_error_ratio_sees_error_at_the_loudest_bins():
    images = np.zeros((1, 8, 40, 1))
    images[0, :, [5, 10], 0] = 1.0                    # two "harmonics"
    at_harmonics = images.copy()
    at_harmonics[0, :, [5, 10], 0] = 0.5              # error only there
    spread_out = images + 0.1                         # the same error everywhere
    assert harmonic_error_ratio(images, at_harmonics)[0] > 100
    np.testing.assert_allclose(harmonic_error_ratio(images, spread_out), 1.0)


@pytest.mark.backend
@pytest.mark.parametrize("kind", ["vqvae", "autoencoder"])
def test_training_does_not_collapse(tiny_config, kind):
    """A few steps of the default setup give an output that depends on the input.

    With the old sigmoid output and Adam at 1e-3 this same setup ends flagged
    (measured: output spread 0.008-0.04 of the inputs', errors 2-6x the
    mean image's, on both backends); the linear output beats every baseline.
    Eight epochs, not five: at five, torch's random streams (other initial
    weights and batch order than JAX's, same distributions) left the outputs'
    spread at 0.045-0.11 and the error at the baselines' over seeds 0-2; at
    eight seeds 0-2 on torch and seed 0 on JAX and TensorFlow clear both.
    """
    import keras

    from vqkeras.experiments.config import input_shape
    from vqkeras.experiments.models import build_model, compile_model

    config = tiny_config.with_overrides({"model.kind": kind, "model.embedding_dim": 2 if kind == "autoencoder" else 8,
                                         "training.learning_rate": 1e-3, "dataset.max_train": 64})
    train_split, test = load_split(config, "train"), load_split(config, "test")
    keras.utils.set_random_seed(0)
    model = build_model(config.model, input_shape(config))
    compile_model(model, learning_rate=1e-3)
    model.fit(train_split.images, train_split.images, batch_size=8, epochs=8, verbose=0)
    out = np.clip(np.asarray(model.predict(test.images, verbose=0)), 0.0, 1.0)
    # Different inputs, different outputs: the outputs spread like the inputs do.
    spread = out.var(axis=0).mean() / test.images.var(axis=0).mean()
    assert spread > 0.05
    baselines = {k: float(np.mean((v - test.images) ** 2))
                 for k, v in baseline_images(train_split.images, audio=True).items()}
    mse = float(np.mean((out - test.images) ** 2))
    assert collapse_status(mse, baselines, spread) == "ok"
    assert mse < 0.95 * min(baselines.values())
