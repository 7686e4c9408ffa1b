"""Shared fixtures: the active backend, seeded rng, real rendered notes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
# Tests must not grab every core's worth of threads on the 2-core CI machine.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests never read or fill the user's compilation cache (~/.cache/vqkeras);
# the cache tests name their own folder.
os.environ.setdefault("VQKERAS_CACHE_DIR", "off")

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def backend() -> str:
    import keras

    return keras.backend.backend()


@pytest.fixture(scope="session")
def timgm_soundfont() -> Path:
    """The General-MIDI soundfont that the pretty_midi wheel ships."""
    from vqkeras.data.render import default_soundfont

    return Path(default_soundfont(prefer_fluid=False))


@pytest.fixture(scope="session")
def notes(timgm_soundfont) -> np.ndarray:
    """Eight real 4-s, 16 kHz notes (piano, guitar, strings, flute...) rendered once."""
    from vqkeras.data.render import render_note

    specs = [(0, 60, 100), (24, 52, 75), (40, 67, 100), (73, 72, 50),
             (56, 64, 127), (32, 40, 100), (11, 76, 75), (19, 48, 100)]
    return np.stack([render_note(timgm_soundfont, p, k, v) for p, k, v in specs]).astype("float32")


@pytest.fixture(scope="session")
def rendered_dataset(tmp_path_factory, timgm_soundfont) -> Path:
    """A small NSynth-layout set rendered from TimGM6mb (a few programs and pitches)."""
    from vqkeras.data.render import render_dataset

    out = tmp_path_factory.mktemp("rendered")
    return render_dataset(out, soundfont=timgm_soundfont, programs=[0, 24, 40, 56, 73, 32],
                          pitches=range(48, 73, 4), velocities=(75, 127), progress=False)


@pytest.fixture(scope="session")
def tiny_config(rendered_dataset, tmp_path_factory):
    """experiments/nsynth-tiny.yaml on the `rendered_dataset`, for the active backend."""
    import keras

    from vqkeras.experiments.config import load_config

    root = Path(__file__).resolve().parent.parent
    return load_config(root / "experiments" / "nsynth-tiny.yaml").with_overrides({
        "dataset.root": str(rendered_dataset), "backend": keras.backend.backend(),
        "runs_root": str(tmp_path_factory.mktemp("runs"))})


@pytest.fixture(scope="session")
def tiny_run(tiny_config):
    """A trained nsynth-tiny run (3 epochs): ``(config, run_dir)``."""
    from vqkeras.experiments.training import train

    config = tiny_config.with_overrides({"training.epochs": 3}, run_name="trained")
    return config, train(config)
