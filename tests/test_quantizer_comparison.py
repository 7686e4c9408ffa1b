"""The quantizer comparison runs end to end (tiny scale) through `vqkeras report`."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from tests import test_notebooks as lint
from tests.conftest import FASHION_MNIST_DIR

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "comparison" / "01_quantizer_comparison.ipynb"
YAML = ROOT / "experiments" / "quantizer-comparison.yaml"


@pytest.mark.parametrize("check", [lint.test_notebook_is_committed_without_outputs,
                                   lint.test_first_code_cell_is_the_only_parameters_cell_and_holds_commented_literals,
                                   lint.test_backend_is_set_before_anything_imports_keras,
                                   lint.test_last_cell_records_parameters_and_commit])
def test_comparison_notebook_follows_the_notebook_rules(check):
    check(NOTEBOOK)


def test_comparison_yaml_has_equal_budgets_per_quantizer():
    from vqkeras.experiments.config import load_config

    runs = load_config(YAML).expand()
    table = pd.DataFrame([{"dataset": r.dataset.name, "quantizer": r.model.quantizer,
                           "bits": r.model.bits_per_vector} for r in runs])
    assert set(table["dataset"]) == {"fashion-mnist", "nsynth"}
    assert set(table["quantizer"]) == {"vq", "rvq", "fsq", "lfq"}
    budgets = table.groupby(["dataset", "quantizer"])["bits"].apply(sorted)
    assert all(b == [4.0, 6.0, 8.0] for b in budgets), budgets


def test_comparison_report_end_to_end_tiny(tmp_path, rendered_dataset, backend):
    from vqkeras.experiments.report import run_report

    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip("Fashion-MNIST is not installed")
    data = yaml.safe_load(YAML.read_text())
    # The real YAML, shrunk: two epochs on a handful of examples, one budget
    # (4 bits), three runs (every quantizer trains in tests/test_quantizer_configs.py),
    # the notes from the test's rendered set.
    data.update(runs_root=str(tmp_path / "runs"), backend=backend)
    data["dataset"].update(max_train=16, max_valid=8, max_test=8)
    data["training"].update(epochs=2, batch_size=8)
    keep = {"fmnist-vq", "fmnist-lfq", "notes-fsq-b4"}
    sweep = []
    for entry in data["sweep"]:
        if entry["name"] not in keep:
            continue
        entry = {k: (v[:1] if isinstance(v, list) and k != "model.levels" else v) for k, v in entry.items()}
        if "dataset.root" in entry:
            entry["dataset.root"] = str(rendered_dataset)
        sweep.append(entry)
    data["sweep"] = sweep
    path = tmp_path / "quantizer-comparison.yaml"
    path.write_text(yaml.safe_dump(data))

    [index] = run_report([path], reports_root=tmp_path / "reports", backend=backend, progress=False)
    report = index.parent
    executed = nbformat.read(report / "01_quantizer_comparison.ipynb", as_version=4)
    assert [p.name for p in report.glob("*.ipynb")] == ["01_quantizer_comparison.ipynb"]  # only its notebook
    table = pd.read_csv(report / "tables" / "quantizer_comparison.csv")
    assert len(table) == 3 and set(table["quantizer"]) == {"vq", "fsq", "lfq"}
    assert (table["bits_per_vector"] == 4.0).all()
    assert table["test_mse"].between(0, 1).all()
    assert table["perplexity"].between(1, 16).all() and table["usage"].between(0, 1).all()
    assert (table["steps_per_s_jax"] > 0).all() and (table["steps_per_s_tensorflow"] > 0).all()
    assert (table["steps_to_target"] % 2 == 0).all() and (table["steps_to_target"] <= 4).all()  # 2 steps/epoch
    assert (report / "figures" / "error_vs_bits.png").stat().st_size > 5000
    wins = pd.read_csv(report / "tables" / "winners.csv")
    assert set(wins["dataset"]) == {"fashion-mnist", "nsynth"}
    assert "error_vs_bits.png" in index.read_text()
    assert executed.cells[-1].outputs  # the provenance cell ran
