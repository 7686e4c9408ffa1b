"""The report runner: papermill execution, error reporting, figures/tables and index.md."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from vqkeras.errors import ConfigError
from vqkeras.experiments.plots import markdown_table, save_figure, save_table
from vqkeras.experiments.report import NotebookError, provenance, run_report, write_index

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LINK = re.compile(r"\]\(([^)]+)\)")


def _links_resolve(index: Path) -> list[str]:
    links = LINK.findall(index.read_text())
    missing = [link for link in links if not (index.parent / link).is_file()]
    assert not missing, f"{index}: links that do not resolve: {missing}"
    return links


def _notebook(folder: Path, name: str, *code: str) -> Path:
    """A minimal report notebook: title, parameters cell, then `code` cells."""
    nb = new_notebook()
    params = new_code_cell('experiment = ""  # YAML\nreports_dir = ""  # output\nbackend = "jax"  # backend')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [new_markdown_cell(f"# {name}"), params, *[new_code_cell(c) for c in code]]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def _tiny_yaml(tmp_path: Path, name: str = "unit", **extra) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **extra}))
    return path


def test_save_figure_and_table_write_into_the_report_folders(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2])
    png = save_figure(fig, tmp_path / "rep", "curve")
    plt.close(fig)
    assert png == tmp_path / "rep" / "figures" / "curve.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000

    df = pd.DataFrame({"run": ["a", "b"], "mse": [0.5, 0.25]})
    csv = save_table(df, tmp_path / "rep", "errors")
    assert csv == tmp_path / "rep" / "tables" / "errors.csv"
    pd.testing.assert_frame_equal(pd.read_csv(csv), df)

    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(ValueError, match="name"):
            save_table(df, tmp_path / "rep", bad)


def test_markdown_table_escapes_pipes_and_formats_floats():
    text = markdown_table(pd.DataFrame({"run": ["a|b"], "mse": [1 / 3]}))
    assert text.splitlines() == ["| run | mse |", "| --- | --- |", "| a\\|b | 0.3333 |"]


def test_index_links_notebooks_figures_tables_and_inlines_the_key_table(tmp_path):
    rep = tmp_path / "rep"
    _notebook(rep, "01_first", "x = 1")
    (rep / "figures").mkdir()
    (rep / "figures" / "latent_size.png").write_bytes(PNG_MAGIC)
    save_table(pd.DataFrame({"run": ["vq-K8"], "test_mse": [0.0123]}), rep, "evaluation")
    save_table(pd.DataFrame({"x": [1]}), rep, "other")

    index = write_index(rep, title="unit", experiment="experiments/unit.yaml", description="A test.")
    text = index.read_text()
    assert "[01_first](01_first.ipynb)" in text
    assert "![latent_size](figures/latent_size.png)" in text
    assert "| vq-K8 | 0.0123 |" in text  # evaluation.csv inlined, not other.csv
    assert "| x |" not in text
    assert set(_links_resolve(index)) == {"01_first.ipynb", "figures/latent_size.png",
                                          "tables/evaluation.csv", "tables/other.csv"}


def test_index_opens_with_findings_and_flags_collapsed_runs(tmp_path):
    rep = tmp_path / "rep"
    save_table(pd.DataFrame({"run": ["vq-K8", "ae-D1"], "test_mse": [0.01, 0.0376],
                             "status": ["ok", "collapsed"]}), rep, "evaluation")
    save_table(pd.DataFrame({"finding": ["F1"], "statement": ["error falls with K"], "holds": ["no"],
                             "evidence": ["K=8: 0.02, K=32: 0.03"]}), rep, "findings")
    index = write_index(rep, title="unit", provenance={"commit": "abc123", "backend": "tensorflow",
                                                        "machine": "2 CPU cores", "wall time": "1.0 min"})
    text = index.read_text()
    assert "WARNING" in text and "`ae-D1` COLLAPSED" in text and "vq-K8` " not in text
    findings_at = text.index("## Findings")
    assert findings_at < text.index("## Notebooks") and findings_at < text.index("## Key results")
    assert "| **F1** error falls with K | no | K=8: 0.02, K=32: 0.03 |" in text
    assert "- commit: abc123" in text and "- backend: tensorflow" in text
    _links_resolve(index)


def test_provenance_records_parameters_and_the_git_commit():
    info = provenance(experiment="e.yaml", backend="jax")
    assert info["experiment"] == "e.yaml" and info["backend"] == "jax"
    if (ROOT / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", info["git_commit"])


def test_a_typo_in_any_yaml_fails_before_a_notebook_runs(tmp_path):
    marker = tmp_path / "ran"
    notebooks = tmp_path / "nb"
    _notebook(notebooks, "01_mark", f"open({str(marker)!r}, 'w').close()")
    good = _tiny_yaml(tmp_path, "good")
    typo = _tiny_yaml(tmp_path, "typo", modle={"num_embeddings": 8})
    with pytest.raises(ConfigError, match="modle"):
        run_report([good, typo], reports_root=tmp_path / "reports", notebooks_dir=notebooks)
    assert not marker.exists()
    assert not (tmp_path / "reports").exists()


def test_parameters_are_injected_and_a_failing_cell_is_reported_with_the_notebook_path(tmp_path):
    notebooks = tmp_path / "nb"
    _notebook(notebooks, "01_ok",
              "from pathlib import Path\n"
              "Path(reports_dir, 'tables').mkdir(parents=True, exist_ok=True)\n"
              "Path(reports_dir, 'tables', 'params.csv').write_text(f'experiment,backend\\n{experiment},{backend}\\n')")
    _notebook(notebooks, "02_fails", "raise ValueError('boom 42')")
    yaml_path = _tiny_yaml(tmp_path, "unit")
    stale = tmp_path / "reports" / "unit" / "figures" / "from_an_earlier_run.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(PNG_MAGIC)
    with pytest.raises(NotebookError) as info:
        run_report([yaml_path], reports_root=tmp_path / "reports", notebooks_dir=notebooks,
                   backend="tensorflow", progress=False)
    executed = tmp_path / "reports" / "unit" / "02_fails.ipynb"
    message = str(info.value)
    assert str(executed) in message and "ValueError: boom 42" in message
    assert executed.is_file()
    assert not stale.exists()
    params = pd.read_csv(tmp_path / "reports" / "unit" / "tables" / "params.csv")
    assert params["backend"].tolist() == ["tensorflow"]
    assert Path(params["experiment"][0]) == yaml_path.resolve()


@pytest.mark.backend
@pytest.mark.slow
def test_report_of_the_tiny_nsynth_experiment_end_to_end(tmp_path, rendered_dataset, backend):
    reports = tmp_path / "reports"
    [index] = run_report([ROOT / "experiments" / "nsynth-tiny.yaml"], reports_root=reports,
                         overrides={"dataset.root": str(rendered_dataset), "runs_root": str(tmp_path / "runs")},
                         backend=backend, progress=False)
    rep = index.parent
    executed = sorted(p.name for p in rep.glob("*.ipynb"))
    assert executed == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    noise = ("oneDNN custom operations", "remapper failed", "Unable to initialize backend")
    for name in executed:  # the backend the notebook ran on is the one asked for
        nb = nbformat.read(rep / name, as_version=4)
        assert nb.metadata["papermill"]["parameters"]["backend"] == backend
        outputs = nbformat.writes(nb)
        assert not [n for n in noise if n in outputs], f"{name}: backend start-up chatter in the outputs"

    figures = list((rep / "figures").glob("*.png"))
    assert {"training_curves", "latent_size_val_mse", "error_frequency_response",
            "reconstructed_spectrograms", "test_error_vs_baselines"} <= {f.stem for f in figures}
    for fig in figures:
        data = fig.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 2000, fig

    tables = {t.stem: pd.read_csv(t) for t in (rep / "tables").glob("*.csv")}
    assert {"evaluation", "latent_size", "error_per_frequency", "findings"} <= set(tables)
    for name, table in tables.items():
        if name == "evaluation_per_clip":  # waveform metrics are NaN past phase_reconstruction.max_clips
            table = table[["mse", "sse"]]
        if name == "findings":  # text only
            continue
        numbers = table.select_dtypes("number").to_numpy(dtype=float)
        assert numbers.size and np.isfinite(numbers).all(), name

    evaluation = tables["evaluation"]
    for baseline in ("zero", "mean_image", "mean_spectrum"):  # computed from the data, one per row
        assert evaluation[f"baseline_{baseline}_mse"].nunique() == 1, baseline
    assert set(evaluation["status"]) <= {"ok", "collapsed", "worse than baseline"}
    best = evaluation[["baseline_zero_mse", "baseline_mean_image_mse", "baseline_mean_spectrum_mse"]].min(axis=1)
    np.testing.assert_allclose(evaluation["improvement_vs_best_baseline"], best / evaluation["test_mse"], rtol=1e-6)
    assert set(tables["findings"]["finding"]) == {"F1", "F2", "F3", "F4"}
    text = index.read_text()
    assert text.index("## Findings") < text.index("## Notebooks")
    assert "- backend: " + backend in text and "- wall time:" in text
    assert (evaluation["compression_ratio"] > 1).all()
    assert (evaluation["latent_bits_per_clip"] > 0).all()

    links = _links_resolve(index)
    assert {f"{name}" for name in executed} <= set(links)
    assert "| run |" in index.read_text()
    assert list((rep / "audio").glob("*.wav"))
