"""Shared output of the per-family codec benchmarks: a Markdown table and a grouped bar chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_family_report(out: str | Path, stem: str, table: str, series: dict[str, list[float]],
                        groups: list[str], *, ylabel: str, title: str,
                        ylim: tuple[float, float] | None = None, size=(7.0, 3.5)) -> None:
    """Print ``table``, write it to ``out/stem.md`` and plot ``out/stem.png``.

    ``series`` maps a legend label to one value per group (the x positions,
    e.g. the families and "all"); the legend goes beside the axes when there
    are more than four series.
    """
    print(table)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    x = np.arange(len(groups))
    width = 0.85 / len(series)
    for k, (label, values) in enumerate(series.items()):
        ax.bar(x + k * width, values, width, label=label)
    ax.set_xticks(x + width * (len(series) - 1) / 2, groups)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 4:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=120)
    plt.close(fig)
