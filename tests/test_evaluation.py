"""evaluate(): per-clip metrics, summary vs untrained, error per frequency, saved files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vqkeras.experiments.evaluation import evaluate, load_evaluation
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
                                      "log_spectral_distance_db", "snr_db"]
    assert len(per_clip) == config.dataset.max_test
    for column in ("mse", "sse", "spectral_convergence_db"):
        assert np.isfinite(per_clip[column]).all(), column
    # Waveform metrics only for the first phase_reconstruction.max_clips clips.
    limit = config.phase_reconstruction.max_clips
    assert np.isfinite(per_clip["log_spectral_distance_db"][:limit]).all()
    assert np.isfinite(per_clip["snr_db"][:limit]).all()
    assert per_clip["snr_db"][limit:].isna().all()
    np.testing.assert_allclose(per_clip["sse"] / per_clip["mse"], 124 * 128, rtol=1e-6)
    # Training helped: the trained model beats the same model at initialisation.
    assert result.summary["mse"] < 0.9 * result.untrained_summary["mse"]
    assert result.summary["sse"] < result.untrained_summary["sse"]
    assert result.summary["spectral_convergence_db"] < result.untrained_summary["spectral_convergence_db"]
    # Error per frequency bin: 128 bins from 0 Hz in steps of sr / frame_length.
    assert result.error_per_frequency.shape == (128,)
    np.testing.assert_allclose(result.frequencies_hz[:2], [0.0, 16000 / 256])
    np.testing.assert_allclose(result.error_per_frequency.mean(), result.summary["mse"], rtol=1e-4)
    text = result.summary_text()
    assert "untrained" in text and "nsynth-tiny/trained" in text


@pytest.mark.backend
def test_evaluation_files_round_trip(tiny_evaluation):
    _, result = tiny_evaluation
    folder = result.run_dir / "evaluation" / "test"
    for name in ("per_clip.csv", "summary.json", "error_per_frequency.csv"):
        assert (folder / name).is_file(), name
    saved = json.loads((folder / "summary.json").read_text())
    assert saved["trained"]["mse"] == pytest.approx(result.summary["mse"])
    assert saved["untrained"]["mse"] == pytest.approx(result.untrained_summary["mse"])
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
    assert result.summary["mse"] < result.untrained_summary["mse"]
