"""One drift computation with explicit methods: shifted columns drift, stable ones do not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN, compute_drift
from mlops_pipeline.spec_sections import DriftSpec


def _frame(rng, n, shift=0.0, cats=("a", "b", "c"), p=(0.5, 0.3, 0.2)):
    return pd.DataFrame({
        "x": rng.normal(shift, 1.0, n),
        "y": rng.normal(0.0, 1.0, n),
        "c": rng.choice(cats, n, p=p),
        PREDICTION_COLUMN: rng.beta(2, 5, n),
    })


def test_only_the_shifted_columns_are_flagged(tmp_path):
    rng = np.random.default_rng(0)
    ref = _frame(rng, 5000)
    cur = _frame(rng, 3000, shift=1.0, p=(0.1, 0.3, 0.6))
    result = compute_drift(ref, cur, ["c"], ["x", "y", PREDICTION_COLUMN], DriftSpec())
    by_col = {c.column: c for c in result.columns}
    assert by_col["x"].drifted and by_col["c"].drifted
    assert not by_col["y"].drifted and not result.prediction.drifted
    assert by_col["x"].method == "psi" and by_col["c"].method == "jensenshannon"
    assert result.drift_share == 2 / 3 and result.drifted_columns == ["c", "x"]
    path = result.save_html(tmp_path / "r.html")
    assert "<html" in path.read_text()[:5000].lower()


def test_verdicts_do_not_depend_on_sample_size():
    rng = np.random.default_rng(1)
    small = compute_drift(_frame(rng, 2000), _frame(rng, 2000), ["c"], ["x", "y"], DriftSpec())
    large = compute_drift(_frame(rng, 50_000), _frame(rng, 50_000), ["c"], ["x", "y"], DriftSpec())
    assert small.drift_share == large.drift_share == 0.0


def _evidently_scores(ref, cur, categorical, numerical, spec):
    from mlops_pipeline.monitoring.drift import _evidently_columns, _evidently_report

    snap = _evidently_report(ref, cur, categorical, numerical, spec)
    return {c.column: c for c in _evidently_columns(snap)}


def test_fast_scores_equal_evidently_on_the_full_frames():
    """The numpy PSI / Jensen-Shannon must be Evidently's numbers (binning, zero filling, NaN/inf
    dropping, the <=20-distinct-values rule), or verdicts could differ from the report's."""
    rng = np.random.default_rng(3)
    n_ref, n_cur = 4000, 2500

    def frame(n, shift, p):
        df = _frame(rng, n, shift=shift, p=p)
        df["few"] = rng.integers(0, 12, n)  # <= 20 distinct values: one bin per value
        df["gappy"] = np.where(rng.random(n) < 0.1, np.nan, rng.normal(shift, 1, n))
        df.loc[df.index[:3], "gappy"] = np.inf
        df["only_ref"] = rng.choice(["u", "v"], n)
        return df

    ref = frame(n_ref, 0.0, (0.5, 0.3, 0.2))
    cur = frame(n_cur, 0.4, (0.2, 0.3, 0.5))
    cur["only_ref"] = rng.choice(["u", "w"], n_cur)  # a category only one side has
    cur.loc[cur.index[:50], "few"] = 99
    categorical, numerical = ["c", "only_ref"], ["x", "y", "few", "gappy", PREDICTION_COLUMN]
    for spec in (DriftSpec(), DriftSpec(num_method="jensenshannon", cat_method="psi")):
        ours = {c.column: c for c in compute_drift(ref, cur, categorical, numerical, spec).columns}
        theirs = _evidently_scores(ref, cur, categorical, numerical, spec)
        assert set(ours) == set(theirs)
        for col, c in ours.items():
            assert c.method == theirs[col].method
            assert c.score == pytest.approx(theirs[col].score, rel=1e-9, abs=1e-12), col
            assert c.drifted == theirs[col].drifted, col


def test_report_is_rendered_from_a_sample_but_scores_use_every_row(monkeypatch):
    import mlops_pipeline.monitoring.drift as drift

    monkeypatch.setattr(drift, "REPORT_ROWS", 500)
    rng = np.random.default_rng(4)
    ref, cur = _frame(rng, 3000), _frame(rng, 2000, shift=1.0)
    result = compute_drift(ref, cur, ["c"], ["x", "y"], DriftSpec())
    assert (result.reference_rows, result.current_rows) == (3000, 2000)
    assert result.report_rows == (500, 500)
    full = _evidently_scores(ref[["c", "x", "y"]], cur[["c", "x", "y"]], ["c"], ["x", "y"], DriftSpec())
    assert [c.score for c in result.columns] == pytest.approx([full[c.column].score for c in result.columns])
