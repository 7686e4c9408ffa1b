"""The report notebooks are reviewable sources: no outputs, literal parameters, backend first."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
# Imports that pull in keras (vqkeras submodules import it, directly or lazily).
KERAS_IMPORT = re.compile(r"^\s*(import|from)\s+(keras|vqkeras|tensorflow|jax)\b", re.MULTILINE)
EXPECTED = ["01_train", "02_evaluate", "03_latent_size", "04_error_frequency_response", "05_reconstructions",
            "06_findings"]


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_the_report_notebooks_are_all_there_and_numbered():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for index, cell in enumerate(_code_cells(nb)):
        assert cell.outputs == [], f"{path.name}: code cell {index} has outputs"
        assert cell.execution_count is None, f"{path.name}: code cell {index} has an execution count"
    assert "papermill" not in nb.metadata, f"{path.name}: an executed copy (papermill metadata)"
    assert "widgets" not in nb.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_is_the_only_parameters_cell_and_holds_commented_literals(path):
    nb = nbformat.read(path, as_version=4)
    cells = _code_cells(nb)
    tagged = [i for i, cell in enumerate(cells) if "parameters" in cell.metadata.get("tags", [])]
    assert tagged == [0], f"{path.name}: the parameters cell must be the first code cell, and only it"

    source = cells[0].source
    names = []
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, \
            f"{path.name}: parameters cell may only assign literals: {ast.unparse(node)}"
        assert isinstance(node.targets[0], ast.Name)
        ast.literal_eval(node.value)  # raises ValueError on anything but a literal
        names.append(node.targets[0].id)
    assert {"experiment", "reports_dir", "backend"} <= set(names)
    for line in source.splitlines():
        if line.strip():
            assert "#" in line, f"{path.name}: parameter line without a comment: {line!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_backend_is_set_before_anything_imports_keras(path):
    nb = nbformat.read(path, as_version=4)
    cells = _code_cells(nb)
    assert not KERAS_IMPORT.search(cells[0].source)
    backend_cell = cells[1].source
    set_at = backend_cell.find('os.environ["KERAS_BACKEND"] = backend')
    assert set_at >= 0, f"{path.name}: the second code cell must set KERAS_BACKEND"
    first_import = KERAS_IMPORT.search(backend_cell)
    assert first_import is not None and first_import.start() > set_at
    assert "assert keras.backend.backend() == backend" in backend_cell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_last_cell_records_parameters_and_commit(path):
    nb = nbformat.read(path, as_version=4)
    last = _code_cells(nb)[-1].source
    assert "provenance(" in last
    for name in ("experiment", "reports_dir", "backend"):
        assert f"{name}={name}" in last
