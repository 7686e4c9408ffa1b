"""Check the thesis's findings against an experiment's own tables.

`check_findings` reads the evaluation table that notebook 02 writes
(``tables/evaluation.csv``: one row per run) and says, for each finding of
the thesis, whether it holds here, with the numbers that show it:

- **F1** the VQ-VAE's test error falls as the codebook size K grows;
- **F2** the autoencoder's test error falls as its latent depth D grows;
- **F3** where the autoencoder overtakes the VQ-VAE in error against latent
  size (kbit): the VQ-VAE wins at small latents, the AE only at larger ones;
- **F4** the autoencoder's error concentrates at the harmonics more than the
  VQ-VAE's (``harmonic_error_ratio``, audio only).

Verdicts are ``yes``, ``partly``, ``no``, ``unclear`` (a run involved
collapsed, so the comparison says nothing) or ``n/a`` (the sweep has no data
for it). Nothing here is tuned to make a finding hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FINDINGS", "check_findings", "trend_verdict"]

#: The findings checked, in order: id -> statement.
FINDINGS = {
    "F1": "VQ-VAE test error falls as the codebook size K grows",
    "F2": "Autoencoder test error falls as the latent depth D grows",
    "F3": "The VQ-VAE has the lower error at small latent sizes; the AE overtakes it only at larger ones",
    "F4": "The autoencoder's error concentrates at the harmonics more than the VQ-VAE's",
}


def trend_verdict(values: list[float]) -> str:
    """``yes`` if ``values`` fall at every step, ``partly`` if only first to last, else ``no``."""
    if len(values) < 2:
        return "n/a"
    steps = [b < a for a, b in zip(values, values[1:])]
    if all(steps):
        return "yes"
    return "partly" if values[-1] < values[0] else "no"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _collapsed(rows: pd.DataFrame) -> list[str]:
    if "status" not in rows:
        return []
    return [str(r) for r in rows.loc[rows["status"] != "ok", "run"]]


def _with_collapse(verdict: str, evidence: str, rows: pd.DataFrame) -> tuple[str, str]:
    bad = _collapsed(rows)
    if bad:
        return "unclear", f"{evidence}; runs flagged collapsed or worse than a baseline: {', '.join(bad)}"
    return verdict, evidence


def _trend(rows: pd.DataFrame, key: str, error: str, label: str) -> tuple[str, str]:
    if len(rows) < 2:
        return "n/a", f"fewer than two {label} runs in the sweep"
    parts, verdicts = [], []
    group = "series" if "series" in rows else None
    for series, part in (rows.groupby(group, sort=False) if group else [("", rows)]):
        part = part.sort_values(key)
        values = [float(v) for v in part[error]]
        verdicts.append(trend_verdict(values))
        points = ", ".join(f"{key}={int(k)}: {_fmt(v)}" for k, v in zip(part[key], values))
        parts.append(f"{series + ': ' if group and rows[group].nunique() > 1 else ''}{points}")
    verdicts = [v for v in verdicts if v != "n/a"] or ["n/a"]
    verdict = ("yes" if all(v == "yes" for v in verdicts) else
               "no" if all(v == "no" for v in verdicts) else "partly")
    return _with_collapse(verdict, f"{error}: " + "; ".join(parts), rows)


def _overtake(vq: pd.DataFrame, ae: pd.DataFrame, error: str) -> tuple[str, str]:
    if vq.empty or ae.empty:
        return "n/a", "the sweep needs both VQ-VAE and AE runs"
    best_vq = vq.loc[vq[error].idxmin()]
    ae = ae.sort_values("latent_kbit")
    smallest = ae.iloc[0]
    better = ae[ae[error] < best_vq[error]]
    head = (f"best VQ-VAE {best_vq['run']}: {error} {_fmt(best_vq[error])} at "
            f"{_fmt(best_vq['latent_kbit'])} kbit; smallest AE {smallest['run']}: "
            f"{_fmt(smallest[error])} at {_fmt(smallest['latent_kbit'])} kbit")
    if smallest[error] <= best_vq[error]:
        verdict = "no"
        tail = "the smallest AE already beats every VQ-VAE: no region where the VQ-VAE wins"
    elif better.empty:
        verdict = "partly"
        tail = (f"no AE up to {_fmt(ae['latent_kbit'].max())} kbit beats the best VQ-VAE: "
                f"the crossover lies beyond the sweep")
    else:
        first = better.iloc[0]
        verdict = "yes"
        tail = (f"the AE overtakes at {first['run']} ({_fmt(first['latent_kbit'])} kbit, "
                f"{_fmt(first[error])}), {first['latent_kbit'] / best_vq['latent_kbit']:.3g}x "
                f"the best VQ-VAE's latent size")
    return _with_collapse(verdict, f"{head}; {tail}", _concat(vq, ae))


def _concat(*frames: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def _harmonics(vq: pd.DataFrame, ae: pd.DataFrame, column: str, error: str) -> tuple[str, str]:
    if column not in vq or column not in ae or vq[column].isna().all() or ae[column].isna().all():
        return "n/a", "no harmonic error ratio (image data, or no audio evaluation)"
    if vq.empty or ae.empty:
        return "n/a", "the sweep needs both VQ-VAE and AE runs"
    vq_mean, ae_mean = float(vq[column].mean()), float(ae[column].mean())

    def span(frame):
        return f"{_fmt(frame[column].min())}-{_fmt(frame[column].max())}"

    verdict = "yes" if ae_mean > vq_mean else "no"
    # The thesis compared one VQ-VAE with one AE of similar quality: name the closest pair too.
    pairs = [(abs(a[error] - v[error]), v, a) for _, v in vq.iterrows() for _, a in ae.iterrows()]
    _, v, a = min(pairs, key=lambda p: p[0])
    evidence = (f"error at the loudest 5% of bins over the error elsewhere: AE {span(ae)} "
                f"(mean {_fmt(ae_mean)}), VQ-VAE {span(vq)} (mean {_fmt(vq_mean)}); closest-error "
                f"pair {v['run']} {_fmt(v[column])} vs {a['run']} {_fmt(a[column])}; "
                f"see figure error_frequency_response")
    return _with_collapse(verdict, evidence, _concat(vq, ae))


def check_findings(evaluation: pd.DataFrame, *, error: str = "test_mse",
                   harmonic: str = "test_harmonic_error_ratio") -> pd.DataFrame:
    """The findings table of a report, computed from its evaluation table.

    Parameters
    ----------
    evaluation : pandas.DataFrame
        One row per run with at least ``run``, ``model`` ("VQ-VAE" or "AE"),
        ``K``, ``D``, ``latent_kbit`` and the ``error`` column; optionally
        ``series`` (one line per VQ-VAE D), ``status`` (from the collapse
        check) and the ``harmonic`` column.
    error : str
        The error column the trends are read from (lower is better).
    harmonic : str
        The harmonic error ratio column (audio).

    Returns
    -------
    pandas.DataFrame
        Columns ``finding`` (F1..F4), ``statement``, ``holds`` and ``evidence``.
    """
    import pandas as pd

    missing = [c for c in ("run", "model", "latent_kbit", error) if c not in evaluation]
    if missing:
        raise ValueError(f"the evaluation table lacks the columns {missing}")
    vq = evaluation[evaluation["model"] == "VQ-VAE"]
    ae = evaluation[evaluation["model"] == "AE"]
    results = {
        "F1": _trend(vq, "K", error, "VQ-VAE"),
        "F2": _trend(ae.assign(series="AE"), "D", error, "AE"),
        "F3": _overtake(vq, ae, error),
        "F4": _harmonics(vq, ae, harmonic, error),
    }
    return pd.DataFrame([{"finding": key, "statement": FINDINGS[key], "holds": verdict, "evidence": evidence}
                         for key, (verdict, evidence) in results.items()])
