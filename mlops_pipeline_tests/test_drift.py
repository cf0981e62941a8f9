"""One drift computation with explicit methods: shifted columns drift, stable ones do not."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_pipeline.drift import PREDICTION_COLUMN, compute_drift
from mlops_pipeline.settings import DriftSpec


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
