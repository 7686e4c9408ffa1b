"""train(): run folder, resume after a kill, skipping finished runs, determinism, data parallel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml

from vqkeras.experiments.config import load_config
from vqkeras.errors import ConfigError
from vqkeras.experiments.training import load_run, train

REPO = Path(__file__).resolve().parent.parent


def _weights(run_dir: Path) -> list[np.ndarray]:
    return load_run(run_dir)[1].get_weights()


def _subprocess_env(**extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": keras.backend.backend(), **extra}
    return env


@pytest.mark.backend
def test_run_folder_layout_and_skip_when_done(tiny_run):
    config, run_dir = tiny_run
    assert run_dir == config.run_dir()
    for name in ("config.yaml", "model.keras", "done", "history.csv", "checkpoints/state.json"):
        assert (run_dir / name).is_file(), name
    assert load_config(run_dir / "config.yaml") == config
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == [0, 1, 2]
    for column in ("loss", "mse", "sse", "vq_perplexity", "vq_usage", "val_loss", "val_mse"):
        assert np.isfinite(history[column]).all(), column
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert state["completed_epochs"] == 3
    # keep_checkpoints (2): only the last two epochs' checkpoints remain.
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.keras")) == [
        "epoch-0002.keras", "epoch-0003.keras"]
    # A finished run is skipped: nothing is rewritten.
    stamp = (run_dir / "model.keras").stat().st_mtime_ns
    assert train(config) == run_dir
    assert (run_dir / "model.keras").stat().st_mtime_ns == stamp
    assert len(pd.read_csv(run_dir / "history.csv")) == 3


def test_backend_mismatch_and_changed_config_are_refused(tiny_config, tiny_run):
    other = "tensorflow" if keras.backend.backend() == "jax" else "jax"
    with pytest.raises(ConfigError, match=f"KERAS_BACKEND={other}"):
        train(tiny_config.with_overrides({"backend": other}))
    config, run_dir = tiny_run
    with pytest.raises(ConfigError, match="different configuration"):
        train(config.with_overrides({"model.num_embeddings": 64}), run_dir=run_dir)
    with pytest.raises(ConfigError, match="has a sweep"):
        train(tiny_config.with_overrides({"sweep": {"model.num_embeddings": [8, 16]}}))


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import keras
    from vqkeras.experiments.config import load_config
    from vqkeras.experiments.training import train

    class KillMidEpoch(keras.callbacks.Callback):
        # SIGKILL in the middle of the second epoch, after epoch 1's checkpoint.
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    train(load_config(sys.argv[1]), callbacks=[KillMidEpoch()])
""")


def test_resume_after_kill_matches_an_uninterrupted_run(tiny_config, tmp_path):
    """Kill a training process mid-epoch, resume, and compare with uninterrupted runs.

    Also the determinism check: two uninterrupted runs give identical weights.
    """
    # No validation: one compiled function less per process (test time). A cosine
    # learning rate: the resumed run must continue the schedule, not restart it.
    config = tiny_config.with_overrides({"training.epochs": 2, "training.tensorboard": True,
                                         "training.lr_schedule": "cosine",
                                         "training.validation": False, "runs_root": str(tmp_path)},
                                        run_name="killed")
    config_path = tmp_path / "killed.yaml"
    config_path.write_text(yaml.safe_dump(config.to_dict()))
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(config_path)], env=_subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-3000:]
    run_dir = config.run_dir()
    assert not (run_dir / "done").exists() and not (run_dir / "model.keras").exists()
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert state["completed_epochs"] == 1
    assert list(pd.read_csv(run_dir / "history.csv")["epoch"]) == [0]
    first_epoch_row = pd.read_csv(run_dir / "history.csv").iloc[0]

    train(config)  # resumes at epoch 1
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == [0, 1]  # epoch 0 not redone, no duplicates
    pd.testing.assert_series_equal(history.iloc[0], first_epoch_row)
    assert json.loads((run_dir / "checkpoints" / "state.json").read_text())["completed_epochs"] == 2
    assert (run_dir / "done").is_file()
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    # More epochs would leave the saved cosine schedule at its floor: refused.
    with pytest.raises(ConfigError, match="cosine learning-rate schedule spans 2 epochs, not 3"):
        train(config.with_overrides({"training.epochs": 3}))

    if keras.backend.backend() != "jax":
        return  # bitwise determinism is checked on JAX (CPU)
    plain_a = train(config.with_overrides({"training.tensorboard": False}, run_name="plain-a"))
    plain_b = train(config.with_overrides({"training.tensorboard": False}, run_name="plain-b"))
    for a, b, resumed in zip(_weights(plain_a), _weights(plain_b), _weights(run_dir)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, resumed)


def test_restart_clears_the_run(tiny_config, tmp_path):
    config = tiny_config.with_overrides({"runs_root": str(tmp_path), "training.keep_checkpoints": 1,
                                         "training.validation": False}, run_name="restart")
    run_dir = train(config)
    (run_dir / "evaluation").mkdir()
    train(config, resume=False)
    assert not (run_dir / "evaluation").exists()
    assert list(pd.read_csv(run_dir / "history.csv")["epoch"]) == [0]
    assert [p.name for p in (run_dir / "checkpoints").glob("*.keras")] == ["epoch-0001.keras"]


_DATA_PARALLEL_SCRIPT = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.INFO)
    import jax
    assert len(jax.devices()) == 2, jax.devices()
    from vqkeras.experiments.config import load_config
    from vqkeras.experiments.training import train
    print(train(load_config(sys.argv[1])))
""")


def test_data_parallel_on_two_host_devices(tiny_config, tmp_path):
    if keras.backend.backend() != "jax":
        pytest.skip("keras.distribution.DataParallel is used on JAX only")
    config = tiny_config.with_overrides({"runs_root": str(tmp_path), "training.validation": False},
                                        run_name="dp")
    config_path = tmp_path / "dp.yaml"
    config_path.write_text(yaml.safe_dump(config.to_dict()))
    env = _subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run([sys.executable, "-c", _DATA_PARALLEL_SCRIPT, str(config_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "data-parallel training on 2 cpu devices" in proc.stderr
    history = pd.read_csv(config.run_dir() / "history.csv")
    assert list(history["epoch"]) == [0] and np.isfinite(history["loss"]).all()
