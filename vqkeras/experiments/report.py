"""Run an experiment's notebooks with papermill and index the results.

``run_report(["experiments/nsynth-minimal.yaml"])`` validates every YAML
first (a typo fails with :class:`~vqkeras.errors.ConfigError` before any
notebook runs), then executes ``notebooks/NN_*.ipynb`` in order into
``reports/<experiment>/NN_*.ipynb`` with the experiment's parameters, and
writes ``reports/<experiment>/index.md`` linking the executed notebooks, the
figures (``figures/*.png``) and tables (``tables/*.csv``) they saved.

The notebooks run in a Jupyter kernel started from this Python (the venv's),
registered once as the ``vqkeras`` kernelspec under ``sys.prefix``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vqkeras.errors import ConfigError, VQKerasError
from vqkeras.experiments.provenance import (  # noqa: F401  (re-exported: notebooks call report.provenance)
    machine_description,
    provenance,
    run_provenance,
    runs_provenance,
)
from vqkeras.files import atomic_write_text

log = logging.getLogger(__name__)

KERNEL_NAME = "vqkeras"
# The table shown inline in index.md, first one found wins.
KEY_TABLES = ("evaluation", "latent_size")
# Columns of the inlined table (when present); the CSV link has them all.
KEY_COLUMNS = ("run", "model", "K", "D", "stages", "latent_kbit", "kbit_per_s", "compression_ratio",
               "test_mse", "test_sse_per_spectrogram", "best_baseline", "improvement_vs_best_baseline",
               "status", "test_spectral_convergence_db", "test_log_spectral_distance_db", "test_snr_db",
               "test_harmonic_error_ratio", "val_mse", "val_sse_per_spectrogram")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NOTEBOOK = re.compile(r"^\d\d_[A-Za-z0-9_-]+\.ipynb$")


class NotebookError(VQKerasError, RuntimeError):
    """A report notebook failed; the message names the executed copy and the cell's error."""


def default_notebooks_dir() -> Path:
    """The ``notebooks/`` folder of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def list_notebooks(notebooks_dir: str | Path | None = None) -> list[Path]:
    """The report notebooks ``NN_name.ipynb`` of a folder, in reading (number) order.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist or holds no numbered notebook.
    """
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"notebooks folder not found: {folder} (run from a source checkout of vqkeras, "
            "or pass notebooks_dir=)")
    notebooks = sorted(p for p in folder.iterdir() if _NOTEBOOK.match(p.name))
    if not notebooks:
        raise FileNotFoundError(f"no NN_name.ipynb notebooks in {folder}")
    return notebooks


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Make sure a Jupyter kernelspec ``name`` starts *this* Python; install it if not.

    The kernelspec goes under ``sys.prefix`` (the venv), so papermill's kernel
    sees the same packages as the caller, whatever ``python3`` kernel the
    system has.

    Returns
    -------
    str
        The kernel name to pass to papermill.
    """
    from ipykernel import kernelspec
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def starts_this_python(kernel: str) -> bool:
        try:
            argv = KernelSpecManager().get_kernel_spec(kernel).argv
        except NoSuchKernel:
            return False
        return bool(argv) and Path(argv[0]).absolute() == Path(sys.executable).absolute()

    if starts_this_python(name):
        return name
    try:
        where = kernelspec.install(kernel_name=name, display_name="Python (vqkeras)", prefix=sys.prefix)
    except OSError:  # read-only prefix: fall back to the user's Jupyter folder
        where = kernelspec.install(kernel_name=name, display_name="Python (vqkeras)", user=True)
    if not starts_this_python(name):
        # A user-level kernelspec of that name (another venv) shadows the one
        # in sys.prefix: use a name of our own instead.
        import hashlib

        name = f"{name}-{hashlib.sha1(sys.executable.encode()).hexdigest()[:8]}"
        where = kernelspec.install(kernel_name=name, display_name="Python (vqkeras)", prefix=sys.prefix)
    log.info("installed Jupyter kernel %r for %s in %s", name, sys.executable, where)
    return name


def _set_dotted(data: dict, key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a mapping in the experiment")
        node = child
    node[parts[-1]] = value


def _apply_overrides(path: Path, overrides: Mapping[str, Any]) -> dict:
    """The YAML at ``path`` as a dict with dotted-key ``overrides`` applied."""
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an experiment YAML must be a mapping")
    # load_config names an experiment without `name` after its file; keep that
    # name, not "experiment" (the derived file's stem).
    data.setdefault("name", path.stem)
    for key, value in overrides.items():
        _set_dotted(data, key, value)
    return data


def _write_yaml(data: dict, out: Path) -> Path:
    import yaml

    atomic_write_text(out, yaml.safe_dump(data, sort_keys=False))
    return out


def _yaml_backend(path: Path) -> str | None:
    """The ``backend`` a YAML sets explicitly (the config's default does not count)."""
    import yaml

    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    return data.get("backend") if isinstance(data, dict) else None


def _cell_error(err: Exception) -> str:
    ename = getattr(err, "ename", type(err).__name__)
    evalue = _ANSI.sub("", str(getattr(err, "evalue", err))).strip()
    return f"{ename}: {evalue}"


def run_report(experiment_paths: Sequence[str | Path] | str | Path, *, reports_root: str | Path = "reports",
               notebooks_dir: str | Path | None = None, kernel_name: str | None = None,
               overrides: Mapping[str, Any] | None = None, backend: str | None = None,
               progress: bool = True) -> list[Path]:
    """Execute the report notebooks for each experiment and write its ``index.md``.

    Parameters
    ----------
    experiment_paths : sequence of str or Path
        Experiment YAMLs. All are validated with
        :func:`vqkeras.experiments.config.load_config` before any notebook runs.
    reports_root : str or Path
        Reports go to ``<reports_root>/<experiment name>/``.
    notebooks_dir : str or Path, optional
        Folder of ``NN_name.ipynb`` notebooks (default: the checkout's
        ``notebooks/``).
    kernel_name : str, optional
        Jupyter kernel to run them in (default: the ``vqkeras`` kernelspec for
        this Python, installed if needed).
    overrides : mapping of dotted key -> value, optional
        Changes applied to every YAML, e.g. ``{"dataset.root": "/data/x",
        "runs_root": "/tmp/runs"}``. The changed YAML is written as
        ``<report>/experiment.yaml`` and that file is what the notebooks read.
    backend : str, optional
        Keras backend for the notebooks. Default: the ``backend`` the YAML
        sets, else ``$KERAS_BACKEND``, else ``"jax"``.
    progress : bool
        Show papermill's progress bar.

    Returns
    -------
    list of Path
        The ``index.md`` of each experiment, in input order.

    Raises
    ------
    ConfigError
        A YAML is invalid (raised before anything runs).
    NotebookError
        A notebook failed: names the executed notebook and the cell's error.
    """
    from vqkeras.experiments.config import load_config

    if isinstance(experiment_paths, (str, Path)):
        experiment_paths = [experiment_paths]
    if not experiment_paths:
        raise ValueError("run_report needs at least one experiment YAML. Received: experiment_paths=[]")
    if backend is not None and backend not in {"jax", "tensorflow", "torch"}:
        raise ValueError(f"backend must be 'jax', 'tensorflow' or 'torch'. Received: backend={backend!r}")
    notebooks = list_notebooks(notebooks_dir)
    root = Path(reports_root)

    # Validate everything first: a typo in the third YAML must not cost the
    # first two experiments' training time.
    plan = []
    for path in experiment_paths:
        path = Path(path)
        config = load_config(path)
        explicit_backend = _yaml_backend(path)
        derived = None
        if overrides:
            derived = _apply_overrides(path, overrides)
            config = load_config(derived)
            explicit_backend = derived.get("backend")
        run_backend = backend or explicit_backend or os.environ.get("KERAS_BACKEND") or config.backend
        chosen = notebooks
        if config.notebooks:  # an experiment with its own notebooks (e.g. the quantizer comparison)
            chosen = list_notebooks(Path(notebooks_dir or default_notebooks_dir()) / config.notebooks)
        plan.append((path.resolve(), derived, config, (root / config.name).resolve(), run_backend, chosen))
    note = ("with overrides " + ", ".join(f"`{k}={v}`" for k, v in overrides.items())
            + " (the notebooks read `experiment.yaml`)") if overrides else ""

    import time

    kernel = kernel_name or ensure_kernel()
    indexes = []
    with _package_on_kernel_path():
        for path, derived, config, reports_dir, run_backend, chosen in plan:
            source = path
            if derived is not None:  # the notebooks read the YAML with the overrides applied
                path = _write_yaml(derived, reports_dir / "experiment.yaml")
            runs = config.expand()
            reused = sum((run.run_dir() / "done").is_file() for run in runs)
            started = time.monotonic()
            executed = _run_notebooks(chosen, kernel=kernel, experiment=path, config=config,
                                      reports_dir=reports_dir, backend=run_backend, progress=progress)
            facts = run_provenance(backend=run_backend, wall_seconds=time.monotonic() - started,
                                   reused_runs=reused, total_runs=len(runs))
            facts.update(runs_provenance(runs))
            indexes.append(write_index(reports_dir, title=config.name, experiment=source, note=note,
                                       description=config.description or "", notebooks=executed,
                                       provenance=facts))
    return indexes


@contextlib.contextmanager
def _package_on_kernel_path():
    """Let the kernel import this very vqkeras even when it is not installed (a checkout)."""
    package_root = str(Path(__file__).resolve().parents[2])
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([package_root] + ([old] if old else []))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _run_notebooks(notebooks: list[Path], *, kernel: str, experiment: Path, config, reports_dir: Path,
                   backend: str, progress: bool) -> list[Path]:
    """Execute ``notebooks`` for one experiment into ``reports_dir``; return the executed copies."""
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    reports_dir.mkdir(parents=True, exist_ok=True)
    _clear_outputs(reports_dir)
    parameters = {"experiment": str(experiment), "reports_dir": str(reports_dir), "backend": backend}
    executed = []
    for notebook in notebooks:
        out = reports_dir / notebook.name
        log.info("%s: running %s -> %s", config.name, notebook.name, out)
        try:
            # cwd: relative paths in the YAML (dataset root, runs_root) mean
            # the same in the notebooks as for the caller.
            pm.execute_notebook(str(notebook), str(out), parameters=parameters, kernel_name=kernel,
                                progress_bar=progress, cwd=os.getcwd(), language="python")
        except PapermillExecutionError as err:
            raise NotebookError(f"notebook {out} failed in cell {err.exec_count}: {_cell_error(err)} "
                                f"(open {out} to see the traceback)") from err
        except (DeadKernelError, CellTimeoutError) as err:  # e.g. killed for memory
            raise NotebookError(f"notebook {out}: the kernel stopped: {type(err).__name__}: {err}") from err
        executed.append(out)
    return executed


def _clear_outputs(reports_dir: Path) -> None:
    """Remove what an earlier report wrote, so index.md lists only this run's results.

    Only generated files are touched: executed ``NN_*.ipynb`` copies and the
    PNG / CSV / WAV files of ``figures/``, ``tables/`` and ``audio/``.
    """
    stale = [p for p in reports_dir.glob("*.ipynb") if _NOTEBOOK.match(p.name)]
    for folder, pattern in (("figures", "*.png"), ("tables", "*.csv"), ("audio", "*.wav")):
        stale += (reports_dir / folder).glob(pattern)
    for path in stale:
        path.unlink()


def _notebook_title(path: Path) -> str:
    """The first markdown heading of a notebook, else its file name."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # an unreadable notebook still gets a link
        return path.stem
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem


def write_index(reports_dir: str | Path, *, title: str, experiment: str | Path | None = None,
                description: str = "", notebooks: Iterable[str | Path] | None = None,
                note: str = "", provenance: Mapping[str, str] | None = None) -> Path:
    """Write ``<reports_dir>/index.md`` linking notebooks, figures and tables.

    It opens with the findings table (``tables/findings.csv``, written by the
    findings notebook) and a loud warning naming any run whose ``status`` in
    ``tables/evaluation.csv`` is not ``ok`` (collapsed, or worse than a
    baseline). The key table (``tables/evaluation.csv``, else ``tables/latent_size.csv``,
    else the first table) is inlined as markdown, cut to `KEY_COLUMNS` when
    it has them. Links are relative to the
    report folder, so it can be moved or published as a whole.

    Parameters
    ----------
    reports_dir : str or Path
        The experiment's report folder.
    title : str
        Heading (the experiment name).
    experiment : str or Path, optional
        The YAML it was run from.
    description : str
        The experiment's description.
    notebooks : iterable of paths, optional
        Executed notebooks (default: every ``NN_*.ipynb`` in the folder).
    note : str
        Markdown appended to the experiment line (e.g. the overrides used).
    provenance : mapping, optional
        Facts listed under "Provenance" (commit, backend, machine, wall time;
        see `run_provenance`).

    Returns
    -------
    Path
        The ``index.md`` written.
    """
    import pandas as pd

    from vqkeras.experiments.plots import markdown_table

    reports_dir = Path(reports_dir)
    if notebooks is None:
        notebooks = sorted(p for p in reports_dir.glob("*.ipynb") if _NOTEBOOK.match(p.name))
    notebooks = [Path(p) for p in notebooks]
    # Creation order is the notebooks' reading order (training curves first).
    def in_order(paths):
        return sorted(paths, key=lambda p: (p.stat().st_mtime_ns, p.name))

    figures = in_order((reports_dir / "figures").glob("*.png"))
    tables = in_order((reports_dir / "tables").glob("*.csv"))

    def rel(p: Path) -> str:
        return Path(os.path.relpath(Path(p).resolve(), reports_dir.resolve())).as_posix()

    lines = [f"# Report: {title}", ""]
    if description:
        lines += [description.strip(), ""]
    if experiment is not None:
        shown = Path(experiment)
        if shown.is_absolute() and shown.is_relative_to(Path.cwd()):
            shown = shown.relative_to(Path.cwd())  # the path the user typed, usually
        lines += [f"Experiment: `{shown.as_posix()}`" + (f" {note}" if note else ""), ""]
    by_stem = {t.stem: t for t in tables}
    if "evaluation" in by_stem:
        evaluation = pd.read_csv(by_stem["evaluation"])
        if "status" in evaluation:
            flagged = evaluation[evaluation["status"] != "ok"]
            if len(flagged):
                lines += ["> **WARNING: " + ", ".join(f"`{r.run}` {str(r.status).upper()}" for r in
                                                     flagged.itertuples())
                          + ".** A collapsed run's output no longer depends on its input; a run worse "
                          "than a baseline is beaten by a constant image. Their numbers below are "
                          "not results.", ""]
    if "findings" in by_stem:
        findings = pd.read_csv(by_stem["findings"], keep_default_na=False)  # "n/a" is a verdict
        lines += [f"## Findings of the thesis: do they hold here? ([{by_stem['findings'].name}]"
                  f"({rel(by_stem['findings'])}))", ""]
        lines += ["| finding | holds here? | evidence |", "|---|---|---|"]
        for row in findings.itertuples():
            lines.append(f"| **{row.finding}** {row.statement} | {row.holds} | {row.evidence} |")
        lines.append("")
    if provenance:
        lines += ["## Provenance", ""] + [f"- {key}: {value}" for key, value in provenance.items()] + [""]
    lines += ["## Notebooks", ""]
    lines += [f"{i}. [{_notebook_title(nb)}]({rel(nb)})" for i, nb in enumerate(notebooks, 1)] or ["(none)"]
    lines.append("")

    key = next((by_stem[k] for k in KEY_TABLES if k in by_stem), tables[0] if tables else None)
    if key is not None:
        table = pd.read_csv(key)
        columns = [c for c in KEY_COLUMNS if c in table]
        if len(columns) >= 2:
            table = table[columns]
        lines += [f"## Key results ([{key.name}]({rel(key)}))", "", markdown_table(table)]
    lines += ["## Figures", ""]
    for fig in figures:
        lines += [f"### {fig.stem}", "", f"![{fig.stem}]({rel(fig)})", ""]
    if not figures:
        lines += ["(none)", ""]
    lines += ["## Tables", ""]
    lines += [f"- [{t.name}]({rel(t)})" for t in tables] or ["(none)"]
    lines.append("")

    out = reports_dir / "index.md"
    out.write_text("\n".join(lines), encoding="utf-8")
    return out


# Helpers the notebooks share (kept here so the notebooks stay thin). ----------

PCM_BITS_PER_SAMPLE = 16
PIXEL_BITS = 8


def is_audio(config) -> bool:
    """Whether an experiment's data are audio spectrograms (vs images)."""
    return bool(config.dataset.is_audio)


def model_label(config) -> str:
    """``"VQ-VAE"`` or ``"AE"``: the series a run belongs to in the latent-size figure."""
    return "VQ-VAE" if config.model.kind == "vqvae" else "AE"


def describe_run(config) -> dict[str, Any]:
    """Size facts of one run: latent grid, bits per clip, bitrate, compression ratio.

    Parameters
    ----------
    config : ExperimentConfig
        One expanded run.

    Returns
    -------
    dict
        ``run``, ``model`` (VQ-VAE / AE), ``K`` (codebook size; None for an
        AE), ``D``, ``stages``, ``series`` (line of the latent-size figure),
        ``latent_grid``, ``latent_bits_per_clip``
        (VQ-VAE: cells x log2(K) x stages; AE: cells x D x 32),
        ``latent_kbit``, ``kbit_per_s`` (audio only), and
        ``compression_ratio`` against 16-bit PCM (audio) or 8-bit pixels
        (images).
    """
    import math

    from vqkeras.experiments.config import input_shape, latent_bits, latent_shape

    vq = config.model.kind == "vqvae"
    bits = int(latent_bits(config))
    h, w = latent_shape(config)
    row: dict[str, Any] = {
        "run": config.run_name,
        "model": model_label(config),
        "K": int(config.model.num_embeddings) if vq else None,
        "D": int(config.model.embedding_dim),
        "stages": int(getattr(config.model, "num_stages", 1) or 1) if vq else None,
        # The line the run belongs to in the latent-size figure: AEs grow D,
        # VQ-VAEs grow K at a fixed D.
        "series": model_label(config) if not vq else (
            f"VQ-VAE D={config.model.embedding_dim}"
            + (f", {config.model.num_stages} stages" if config.model.num_stages > 1 else "")),
        "latent_grid": f"{h}x{w}",
        "latent_bits_per_clip": bits,
        "latent_kbit": bits / 1000.0,
    }
    if is_audio(config):
        spec = config.spectrogram
        pcm_bits = round(spec.sample_rate * spec.duration) * PCM_BITS_PER_SAMPLE
        row["kbit_per_s"] = bits / 1000.0 / spec.duration
    else:
        pcm_bits = math.prod(input_shape(config)) * PIXEL_BITS
    row["compression_ratio"] = pcm_bits / bits
    return row


def load_runs(experiment: str | Path, *, backend: str | None = None):
    """An experiment's config and its runs (the sweep expanded), on ``backend``.

    A report can run an experiment on another backend than its YAML names
    (``vqkeras --backend tensorflow report ...``); the runs then carry that
    backend, so `vqkeras.experiments.training.train` accepts them.

    Returns
    -------
    (ExperimentConfig, list of ExperimentConfig)
    """
    from vqkeras.experiments.config import load_config

    config = load_config(experiment)
    runs = config.expand()
    if backend is not None and config.backend != backend:
        runs = [run.with_overrides({"backend": backend}) for run in runs]
    return config, runs
