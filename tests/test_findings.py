"""The findings table: computed from the evaluation table, honest about what does not hold."""

from __future__ import annotations

import pandas as pd
import pytest

from vqkeras.experiments.findings import FINDINGS, check_findings, trend_verdict


def _table(vq_errors, ae_errors, *, vq_kbit=(0.5, 1.0, 1.5, 2.0), ae_kbit=(4.0, 8.0, 16.0),
           vq_harmonic=1.5, ae_harmonic=3.0, status=None):
    rows = []
    for k, error, kbit in zip((8, 32, 128, 512), vq_errors, vq_kbit):
        rows.append(dict(run=f"vq-K{k}", model="VQ-VAE", K=k, D=16, series="VQ-VAE D=16", latent_kbit=kbit,
                         test_mse=error, test_harmonic_error_ratio=vq_harmonic, status="ok"))
    for d, error, kbit in zip((1, 2, 4), ae_errors, ae_kbit):
        rows.append(dict(run=f"ae-D{d}", model="AE", K=None, D=d, series="AE", latent_kbit=kbit,
                         test_mse=error, test_harmonic_error_ratio=ae_harmonic, status="ok"))
    table = pd.DataFrame(rows)
    if status:
        table.loc[table["run"] == status[0], "status"] = status[1]
    return table


def _verdicts(table):
    findings = check_findings(table)
    assert list(findings["finding"]) == list(FINDINGS)
    return dict(zip(findings["finding"], findings["holds"])), dict(zip(findings["finding"], findings["evidence"]))


@pytest.mark.parametrize("values, expected", [
    ([4, 3, 2, 1], "yes"), ([4, 2, 3, 1], "partly"), ([1, 2, 3], "no"), ([2, 2], "no"), ([1], "n/a")])
def test_trend_verdict(values, expected):
    assert trend_verdict(values) == expected


def test_findings_hold_on_a_table_that_shows_them():
    verdicts, evidence = _verdicts(_table([0.020, 0.015, 0.012, 0.010], [0.030, 0.011, 0.008]))
    assert verdicts == {"F1": "yes", "F2": "yes", "F3": "yes", "F4": "yes"}
    assert "K=8: 0.02" in evidence["F1"] and "K=512: 0.01" in evidence["F1"]
    assert "overtakes at ae-D4" in evidence["F3"] and "8x" in evidence["F3"]  # first AE below the best VQ-VAE


def test_a_planted_non_monotone_sweep_does_not_hold():
    # The old report's K sweep: 208, 172, 193 (SSE), then a rise at the end.
    verdicts, evidence = _verdicts(_table([0.0208, 0.0172, 0.0193, 0.0199], [0.030, 0.031, 0.032]))
    assert verdicts["F1"] == "partly"  # falls from first to last but not at every step
    assert verdicts["F2"] == "no"
    verdicts, _ = _verdicts(_table([0.010, 0.012, 0.014, 0.016], [0.030, 0.020, 0.010]))
    assert verdicts["F1"] == "no" and verdicts["F2"] == "yes"


def test_overtaking_beyond_the_sweep_and_from_the_start():
    verdicts, evidence = _verdicts(_table([0.020, 0.015, 0.012, 0.010], [0.030, 0.020, 0.015]))
    assert verdicts["F3"] == "partly" and "beyond the sweep" in evidence["F3"]
    verdicts, evidence = _verdicts(_table([0.020, 0.015, 0.012, 0.010], [0.005, 0.004, 0.003]))
    assert verdicts["F3"] == "no"


def test_harmonics_finding_reads_the_ratio_and_is_na_for_images():
    verdicts, _ = _verdicts(_table([0.02, 0.015, 0.012, 0.01], [0.03, 0.011, 0.008], vq_harmonic=3.0,
                                   ae_harmonic=2.0))
    assert verdicts["F4"] == "no"
    images = _table([0.02, 0.015, 0.012, 0.01], [0.03, 0.011, 0.008]).drop(columns="test_harmonic_error_ratio")
    verdicts, _ = _verdicts(images)
    assert verdicts["F4"] == "n/a"


def test_a_collapsed_run_makes_its_findings_unclear():
    verdicts, evidence = _verdicts(_table([0.020, 0.015, 0.012, 0.010], [0.0376, 0.0376, 0.008],
                                          status=("ae-D1", "collapsed")))
    assert verdicts["F2"] == verdicts["F3"] == verdicts["F4"] == "unclear"
    assert verdicts["F1"] == "yes"  # the VQ-VAE sweep does not involve the collapsed run
    assert "ae-D1" in evidence["F2"]


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="test_mse"):
        check_findings(pd.DataFrame({"run": ["a"], "model": ["AE"], "latent_kbit": [1.0]}))
