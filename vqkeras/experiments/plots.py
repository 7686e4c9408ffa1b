"""Figure and table helpers shared by the report notebooks.

Every figure of a report is saved through :func:`save_figure` into
``<reports_dir>/figures/<name>.png`` and every table through
:func:`save_table` into ``<reports_dir>/tables/<name>.csv``, so the report
index (:mod:`vqkeras.experiments.report`) finds them by folder. The plotting functions
take plain pandas / numpy data (what ``history.csv`` and
:func:`vqkeras.experiments.evaluation.evaluate` give) and return a matplotlib ``Figure``;
they never import Keras.

matplotlib, seaborn and pandas are imported inside the functions, so
``import vqkeras.experiments.plots`` is cheap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd
    from matplotlib.figure import Figure

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Columns of history.csv that are bookkeeping, not curves.
_NOT_CURVES = {"epoch", "lr", "learning_rate", "time", "seconds", "step"}


def _check_name(name: str) -> str:
    # The name becomes a file name: refuse separators so a figure cannot land
    # outside figures/ (and the index links stay simple).
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            "A figure/table name must be letters, digits, '_', '-' or '.', "
            f"not starting with '.' or '-'. Received: name={name!r}"
        )
    return name


def save_figure(fig: Figure, reports_dir: str | Path, name: str, *, dpi: int = 120) -> Path:
    """Save a figure as ``<reports_dir>/figures/<name>.png``.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure (left open, so a notebook still shows it inline).
    reports_dir : str or Path
        The experiment's report folder, e.g. ``reports/nsynth-minimal``.
    name : str
        File stem: letters, digits, ``_``, ``-``, ``.``.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    Path
        The PNG written.
    """
    _check_name(name)
    out = Path(reports_dir) / "figures" / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight")
    return out


def save_table(df: pd.DataFrame, reports_dir: str | Path, name: str, *, index: bool = False) -> Path:
    """Save a table as ``<reports_dir>/tables/<name>.csv``.

    Parameters
    ----------
    df : pandas.DataFrame
        The table. Display it in the notebook yourself (``df`` as the cell's
        last expression) so the executed notebook shows it too.
    reports_dir : str or Path
        The experiment's report folder.
    name : str
        File stem: letters, digits, ``_``, ``-``, ``.``.
    index : bool
        Whether to write the DataFrame index as a column.

    Returns
    -------
    Path
        The CSV written.
    """
    _check_name(name)
    out = Path(reports_dir) / "tables" / f"{name}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=index)
    return out


def markdown_table(df: pd.DataFrame, *, float_format: str = "{:.4g}", max_rows: int = 50) -> str:
    """Render a DataFrame as a GitHub-flavoured markdown table (no tabulate needed).

    Parameters
    ----------
    df : pandas.DataFrame
        The table; its index is not written.
    float_format : str
        ``str.format`` pattern for float cells.
    max_rows : int
        Rows beyond this are cut and a "... (n more rows)" line added.

    Returns
    -------
    str
        The markdown text, ending with a newline.
    """

    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            # NaN (e.g. K of an autoencoder) reads better as an empty cell.
            text = "" if np.isnan(value) else float_format.format(float(value))
        else:
            text = str(value)
        # A pipe would split the cell; newlines would end the row.
        return text.replace("|", "\\|").replace("\n", " ")

    columns = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |",
             "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in df.head(max_rows).itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    if len(df) > max_rows:
        lines.append(f"\n... ({len(df) - max_rows} more rows)")
    return "\n".join(lines) + "\n"


def _setup():
    import matplotlib

    # Notebooks run headless under papermill; only pick Agg when nothing
    # interactive (e.g. the inline backend) is already active.
    if matplotlib.get_backend().lower() in {"", "agg"}:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def _maybe_log(ax, axis: str, values) -> None:
    """Log scale when the values are positive and span at least a decade.

    Tick labels stay plain numbers (``0.01``, ``200``) and minor ticks get
    none, so a narrow range does not end in overlapping ``2x10^1`` labels.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0 or (values <= 0).any() or values.max() < 10 * values.min():
        return
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    # 1-2-5 ticks: a range of one or two decades still gets several labels.
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def _splits(data: pd.DataFrame) -> list[str]:
    """Training before validation in legends, and only the splits present."""
    return [s for s in ("training", "validation") if (data["split"] == s).any()]


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def history_curve_columns(history: pd.DataFrame) -> list[str]:
    """Loss/error columns of a ``history.csv`` frame (training and ``val_``).

    Perplexity and usage columns (codebook statistics) are left out; see
    :func:`plot_codebook_usage`.
    """
    return [c for c in history.columns
            if c not in _NOT_CURVES and not c.endswith(("perplexity", "usage"))
            and np.issubdtype(history[c].dtype, np.number)]


def _long_history(histories: Mapping[str, pd.DataFrame], columns_of) -> pd.DataFrame:
    import pandas as pd

    frames = []
    for run, history in histories.items():
        epoch = history["epoch"] if "epoch" in history else pd.Series(np.arange(len(history)))
        for column in columns_of(history):
            split = "validation" if column.startswith("val_") else "training"
            frames.append(pd.DataFrame({
                "run": run, "epoch": np.asarray(epoch) + 1,
                "metric": column.removeprefix("val_"), "split": split,
                "value": history[column].to_numpy(dtype=float),
            }))
    if not frames:
        return pd.DataFrame(columns=["run", "epoch", "metric", "split", "value"])
    return pd.concat(frames, ignore_index=True)


def plot_training_curves(histories: Mapping[str, pd.DataFrame]) -> Figure:
    """Loss curves of several runs, one panel per metric, training vs validation.

    Parameters
    ----------
    histories : mapping of run name -> DataFrame
        Each frame as read from a run's ``history.csv`` (one row per epoch).

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt, sns = _setup()
    data = _long_history(histories, history_curve_columns)
    metrics = list(dict.fromkeys(data["metric"])) or ["loss"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        part = data[data["metric"] == metric]
        if len(part):
            sns.lineplot(part, x="epoch", y="value", hue="run", style="split", style_order=_splits(data), marker="o", ax=ax,
                         legend=ax is axes[0][-1])
        ax.set_title(metric)
        ax.set_ylabel(metric)
        _integer_epochs(ax)
        if len(part):
            _maybe_log(ax, "y", part["value"])
    if len(data):
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize="small")
    fig.suptitle("Training curves")
    fig.tight_layout()
    return fig


def plot_codebook_usage(histories: Mapping[str, pd.DataFrame]) -> Figure | None:
    """Codebook perplexity and usage over training (VQ runs only).

    Parameters
    ----------
    histories : mapping of run name -> DataFrame
        Frames from ``history.csv``; columns ending in ``perplexity`` or
        ``usage`` are plotted.

    Returns
    -------
    matplotlib.figure.Figure or None
        None when no run logged codebook statistics (e.g. only autoencoders).
    """
    def columns_of(history):
        # Validation columns that are all zero mean "not measured" (the
        # statistics are only updated in training steps), not a dead codebook.
        return [c for c in history.columns if c.endswith(("perplexity", "usage"))
                and not (c.startswith("val_") and (history[c] == 0).all())]

    data = _long_history(histories, columns_of)
    if data.empty:
        return None
    plt, sns = _setup()
    data["statistic"] = np.where(data["metric"].str.endswith("perplexity"), "perplexity", "usage")
    stats = list(dict.fromkeys(data["statistic"]))
    fig, axes = plt.subplots(1, len(stats), figsize=(4.8 * len(stats), 3.6), squeeze=False)
    for ax, stat in zip(axes[0], stats):
        sns.lineplot(data[data["statistic"] == stat], x="epoch", y="value", hue="run", style="split", style_order=_splits(data),
                     marker="o", ax=ax, legend=ax is axes[0][-1])
        ax.set_title(f"codebook {stat}")
        _integer_epochs(ax)
        ax.set_ylabel(stat)
    sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize="small")
    fig.tight_layout()
    return fig


def plot_latent_size(results: pd.DataFrame, *, error: str, x: str = "latent_kbit", series: str = "series",
                     title: str = "Validation error vs latent size") -> Figure:
    """The thesis's main figure: reconstruction error against latent size.

    Parameters
    ----------
    results : pandas.DataFrame
        One row per run, with the columns named by ``x``, ``error`` and
        ``series``.
    error : str
        Column plotted on the y axis (log scale when all positive).
    x : str
        Latent size column, in kbit (log scale).
    series : str
        Column naming the line each run belongs to, e.g. ``"AE"`` (growing D)
        or ``"VQ-VAE D=64"`` (growing K); see `vqkeras.experiments.report.describe_run`.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt, sns = _setup()
    for column in (x, error, series):
        if column not in results:
            raise ValueError(f"results has no column {column!r}; columns: {list(results.columns)}")
    data = results.sort_values([series, x])
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    sns.lineplot(data, x=x, y=error, hue=series, style=series, markers=True, dashes=False, ax=ax,
                 markersize=8, sort=True)
    _maybe_log(ax, "x", data[x])
    _maybe_log(ax, "y", data[error])
    ax.set_xlabel("latent size (kbit)")
    ax.set_ylabel(error)
    ax.set_title(title)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), fontsize="small", title=None)
    fig.tight_layout()
    return fig


def plot_error_frequency_response(frequencies_hz: np.ndarray, errors: Mapping[str, np.ndarray], *,
                                  ylabel: str = "squared error (mean over time and clips)") -> Figure:
    """Reconstruction error per frequency bin, one line per run.

    Parameters
    ----------
    frequencies_hz : np.ndarray [shape=(bins,)]
        Centre frequency of each bin.
    errors : mapping of label -> np.ndarray [shape=(bins,)]
        Error per bin (averaged over time and clips), e.g. per latent size.
    ylabel : str
        y-axis label.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import pandas as pd

    plt, sns = _setup()
    freqs = np.asarray(frequencies_hz, dtype=float)
    frames = []
    for label, err in errors.items():
        err = np.asarray(err, dtype=float).reshape(-1)
        if err.shape != freqs.shape:
            raise ValueError(f"errors[{label!r}] has {err.shape[0]} bins but frequencies_hz has "
                             f"{freqs.shape[0]}")
        frames.append(pd.DataFrame({"frequency (Hz)": freqs, "error": err, "run": label}))
    data = pd.concat(frames, ignore_index=True)
    fig, ax = plt.subplots(figsize=(8, 4))
    sns.lineplot(data, x="frequency (Hz)", y="error", hue="run", ax=ax, linewidth=1)
    _maybe_log(ax, "y", data["error"])
    ax.set_ylabel(ylabel)
    ax.set_title("Error frequency response")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), fontsize="small")
    fig.tight_layout()
    return fig


def plot_spectrogram_pairs(originals: np.ndarray, reconstructions: Sequence[np.ndarray] | np.ndarray,
                           *, labels: Sequence[str] | None = None, column_titles: Sequence[str] | None = None,
                           sample_rate: float | None = None, frame_step: int | None = None) -> Figure:
    """Original and reconstructed spectrogram images side by side.

    Parameters
    ----------
    originals : np.ndarray [shape=(n, frames, bins) or (n, frames, bins, 1)]
        Model images (time first, values in [0, 1]).
    reconstructions : np.ndarray of the same shape, or a sequence of them
        One array per model to compare (one column each).
    labels : sequence of str, optional
        One label per clip (row).
    column_titles : sequence of str, optional
        Titles of the reconstruction columns.
    sample_rate, frame_step : optional
        When given, the time axis is labelled in seconds.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt, _ = _setup()
    originals = np.asarray(originals)
    if isinstance(reconstructions, np.ndarray) and reconstructions.ndim == originals.ndim:
        reconstructions = [reconstructions]
    recs = [np.asarray(r) for r in reconstructions]
    n = originals.shape[0]
    titles = ["original"] + list(column_titles or [f"reconstruction {i + 1}" for i in range(len(recs))])
    fig, axes = plt.subplots(n, 1 + len(recs), figsize=(3.2 * (1 + len(recs)), 2.6 * n), squeeze=False)
    extent = None
    for row in range(n):
        for col, images in enumerate([originals, *recs]):
            image = np.squeeze(images[row])
            if sample_rate and frame_step:
                extent = (0, image.shape[0] * frame_step / sample_rate, 0, image.shape[1])
            ax = axes[row][col]
            ax.grid(False)
            # Time first in our arrays; show frequency on the y axis, low at the bottom.
            ax.imshow(image.T, origin="lower", aspect="auto", cmap="magma", vmin=0.0, vmax=1.0,
                      extent=extent, interpolation="nearest")
            if col == 0:
                # Clip ids are long: a title per row reads better than a y label.
                ax.set_title(f"original: {labels[row] if labels else f'clip {row}'}", fontsize="small")
                ax.set_ylabel("frequency bin")
            elif row == 0:
                ax.set_title(titles[col], fontsize="small")
            if row == n - 1:
                ax.set_xlabel("time (s)" if extent else "frame")
    fig.tight_layout()
    return fig


def plot_image_grid(originals: np.ndarray, reconstructions: Sequence[np.ndarray] | np.ndarray, *,
                    column_titles: Sequence[str] | None = None) -> Figure:
    """Image datasets: originals in the first row, each model's reconstruction below.

    Parameters
    ----------
    originals : np.ndarray [shape=(n, height, width, channels)], values in [0, 1]
    reconstructions : np.ndarray of the same shape, or a sequence of them
    column_titles : sequence of str, optional
        Row titles for the reconstructions.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt, _ = _setup()
    originals = np.asarray(originals)
    if isinstance(reconstructions, np.ndarray) and reconstructions.ndim == originals.ndim:
        reconstructions = [reconstructions]
    recs = [np.asarray(r) for r in reconstructions]
    rows = [originals, *recs]
    titles = ["original"] + list(column_titles or [f"reconstruction {i + 1}" for i in range(len(recs))])
    n = originals.shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n + 1.5, 1.4 * len(rows)), squeeze=False)
    for r, images in enumerate(rows):
        for i in range(n):
            image = np.clip(np.asarray(images[i], dtype=float), 0.0, 1.0)
            if image.ndim == 3 and image.shape[-1] == 1:
                image = image[..., 0]
            ax = axes[r][i]
            ax.grid(False)
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(titles[r], rotation=0, ha="right", va="center", fontsize="small")
    fig.tight_layout()
    return fig


def plot_error_vs_baselines(evaluation: pd.DataFrame, *, error: str = "test_mse",
                            baselines: Sequence[str] = ("baseline_zero_mse", "baseline_mean_image_mse",
                                                        "baseline_mean_spectrum_mse"),
                            ylabel: str = "test MSE per pixel") -> Figure:
    """Bars of each run's error, with the data baselines drawn as horizontal lines.

    Runs whose ``status`` column is not ``"ok"`` (collapsed, or worse than a
    baseline) get a red, labelled bar.

    Parameters
    ----------
    evaluation : pandas.DataFrame
        One row per run with the columns ``run``, ``error`` and the baseline columns.
    error : str
        The runs' error column.
    baselines : sequence of str
        Baseline columns (the same value on every row); missing ones are skipped.
    ylabel : str
        y-axis label.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt, sns = _setup()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(evaluation) + 3), 3.8))
    status = evaluation["status"] if "status" in evaluation else None
    colors = ["tab:red" if status is not None and status.iloc[i] != "ok" else "tab:blue"
              for i in range(len(evaluation))]
    ax.bar(evaluation["run"].astype(str), evaluation[error], color=colors)
    if status is not None:
        for i, (value, state) in enumerate(zip(evaluation[error], status)):
            if state != "ok":
                ax.annotate(state, (i, value), ha="center", va="bottom", color="tab:red", fontsize="small")
    styles = iter(["--", ":", "-."])
    for column in baselines:
        if column in evaluation and evaluation[column].notna().any():
            label = column.removeprefix("baseline_").removesuffix("_mse").replace("_", " ")
            ax.axhline(float(evaluation[column].iloc[0]), color="0.3", linestyle=next(styles),
                       label=f"baseline: {label}")
    values = list(evaluation[error]) + [float(evaluation[c].iloc[0]) for c in baselines if c in evaluation]
    _maybe_log(ax, "y", values)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    ax.set_title("Test error against the data baselines")
    fig.tight_layout()
    return fig
