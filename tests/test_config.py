"""Experiment YAML schema: validation messages, sweeps, shapes and latent sizes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from vqkeras.experiments.config import input_shape, latent_bits, latent_shape, load_config
from vqkeras.errors import ConfigError

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_experiments_load_and_expand(path):
    config = load_config(path)
    assert config.name == path.stem
    runs = config.expand()
    names = [r.run_name for r in runs]
    assert len(names) == len(set(names))
    for run in runs:
        assert run.sweep is None
        assert latent_bits(run) > 0
        # Every run round-trips through its saved form (config.yaml).
        assert load_config(yaml.safe_load(yaml.safe_dump(run.to_dict()))) == run


@pytest.mark.parametrize("name", ["nsynth-minimal", "fashion-mnist-minimal"])
def test_default_report_experiments_sweep_enough_latent_sizes(name):
    runs = load_config(EXPERIMENTS / f"{name}.yaml").expand()
    kinds = [r.model.kind for r in runs]
    # Enough points to test the thesis's trends: at least 4 K and 3 D.
    assert kinds.count("vqvae") >= 4 and kinds.count("autoencoder") >= 3
    assert len({latent_bits(r) for r in runs}) == len(runs)


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_no_experiment_uses_a_sigmoid_output(path):
    # A sigmoid output collapsed the first reports' autoencoders to a black image.
    assert load_config(path).model.output_activation == "linear"


def test_thesis_front_end_of_nsynth_full():
    config = load_config(EXPERIMENTS / "nsynth-full.yaml")
    spec = config.spectrogram
    assert (spec.frame_length, spec.frame_step, spec.scaling, spec.dynamic_range_db) == (1024, 128, "per_clip", 120)
    assert input_shape(config) == (512, 512, 1)
    assert config.spectrogram_config().scaling == "per_clip"
    assert load_config(EXPERIMENTS / "nsynth-minimal.yaml").spectrogram.scaling == "fixed"


def test_thesis_latent_bits():
    # Thesis NSynth: 4x downsampling in time and frequency, K=1024 -> 10 bits per cell.
    config = load_config(EXPERIMENTS / "nsynth-full.yaml").with_overrides(
        {"model.kind": "vqvae", "model.num_embeddings": 1024, "model.embedding_dim": 256})
    h, w = latent_shape(config)
    assert input_shape(config) == (4 * h, 4 * w, 1)
    assert w == 128  # 512 bins (1024-sample frames, Nyquist dropped) / 4
    assert latent_bits(config) == h * w * 10
    ae = config.with_overrides({"model.kind": "autoencoder", "model.embedding_dim": 3})
    assert latent_bits(ae) == h * w * 3 * 32
    rvq = config.with_overrides({"model.quantizer": "rvq", "model.num_stages": 4})
    assert latent_bits(rvq) == h * w * 10 * 4


def test_image_dataset_shapes():
    config = load_config({"name": "f", "dataset": {"name": "fashion-mnist"}})
    assert input_shape(config) == (28, 28, 1)
    assert latent_shape(config) == (7, 7)
    config = load_config({"name": "c", "dataset": {"name": "cifar10"}, "model": {"num_embeddings": 32}})
    assert input_shape(config) == (32, 32, 3)
    assert latent_bits(config) == 8 * 8 * 5


@pytest.mark.parametrize("data, message", [
    ({"model": {"quantizer": "rvqq"}}, "model.quantizer: 'rvqq' is not one of ['vq', 'rvq', 'fsq', 'lfq'] (did you mean 'rvq'?)"),
    ({"training": {"learning_rate": -1}}, "training.learning_rate: expected a positive number, got -1"),
    ({"training": {"batch_size": "16"}}, "training.batch_size: expected a positive integer, got '16'"),
    ({"training": {"epochs": 2.5}}, "training.epochs: expected a positive integer, got 2.5"),
    ({"training": {"lr_schedule": "cosin"}}, "training.lr_schedule: 'cosin' is not one of ['constant', 'cosine'] (did you mean 'cosine'?)"),
    ({"model": {"num_embedings": 64}}, "model.num_embedings: unknown key (did you mean 'num_embeddings'?)"),
    ({"modle": {}}, "modle: unknown key (did you mean 'model'?)"),
    ({"dataset": {"name": "fashion_mnist"}}, "(did you mean 'fashion-mnist'?)"),
    ({"model": {"strides": [2, 2]}}, "model.strides: expected a non-empty list of [time, freq] pairs"),
    ({"model": {"num_stages": 4}}, "model.num_stages: must be 1 when model.quantizer is 'vq'"),
    ({"model": {"decay": 1.5}}, "model.decay: expected a number in [0.0, 1.0], got 1.5"),
    ({"model": {"ema": "yes"}}, "model.ema: expected true or false, got 'yes'"),
    ({"dataset": {"name": "fashion-mnist"}, "model": {"strides": [[2, 2], [2, 2], [2, 2]]}},
     "model.strides: the time strides multiply to 8, which does not divide the input's time size 28"),
    ({"name": "my run/1"}, "name: expected a folder-safe name"),
    ({"spectrogram": {"frame_step": 1024}}, "spectrogram.frame_step: must be <= frame_length (512)"),
    ({"sweep": {"model.num_embedings": [16, 32]}}, "sweep.model.num_embedings: unknown key (did you mean 'num_embeddings'?)"),
    ({"sweep": {"model.num_embeddings": [16, -1]}}, "sweep (run 'K-1'): model.num_embeddings: expected an integer >= 2, got -1"),
    ({"sweep": {"model": [1]}}, "sweep.model: names a whole section"),
    ({"sweep": [{"name": "a", "model.num_embeddings": 16}, {"name": "a", "model.num_embeddings": 32}]},
     "run names ['a'] are not unique"),
    ({"sweep": 3}, "sweep: expected a mapping of dotted keys"),
])
def test_bad_configs_are_refused_with_the_key_path(data, message):
    with pytest.raises(ConfigError) as info:
        load_config({"name": "x", **data})
    assert message in str(info.value)


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(ConfigError, match=r"allowed keys: \[.*'learning_rate'.*\]"):
        load_config({"training": {"lr": 1e-3}})


def test_sweep_grid_and_named_entries():
    config = load_config({
        "name": "mix",
        "model": {"num_hiddens": 32},
        "sweep": [
            {"name": "vq", "model.num_embeddings": [16, 64], "model.embedding_dim": [4, 8]},
            {"name": "ae", "model.kind": "autoencoder", "model.embedding_dim": [1, 2]},
            {"name": "rvq", "model.quantizer": "rvq", "model.num_stages": 4, "model.strides": [[[2, 4], [2, 2]]]},
        ],
    })
    runs = config.expand()
    assert [r.run_name for r in runs] == ["vq-K16-D4", "vq-K16-D8", "vq-K64-D4", "vq-K64-D8",
                                          "ae-D1", "ae-D2", "rvq"]
    assert [(r.model.num_embeddings, r.model.embedding_dim) for r in runs[:4]] == [
        (16, 4), (16, 8), (64, 4), (64, 8)]
    assert {r.model.kind for r in runs[4:6]} == {"autoencoder"}
    assert runs[6].model.strides == [[2, 4], [2, 2]] and runs[6].model.num_stages == 4
    assert all(r.model.num_hiddens == 32 and r.sweep is None for r in runs)
    assert runs[0].run_dir() == Path("runs") / "mix" / "vq-K16-D4"


def test_mapping_sweep_and_no_sweep():
    runs = load_config({"name": "s", "sweep": {"training.learning_rate": [1e-3, 2e-4]}}).expand()
    assert [r.run_name for r in runs] == ["learning_rate=0.001", "learning_rate=0.0002"]
    single = load_config({"name": "s"})
    assert single.expand() == [single] and single.run_name == "main"


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    ok = tmp_path / "named-by-file.yaml"
    ok.write_text("model:\n  num_embeddings: 64\n")
    config = load_config(ok)
    assert config.name == "named-by-file" and config.model.num_embeddings == 64
    assert math.isclose(config.training.learning_rate, 2e-4)
