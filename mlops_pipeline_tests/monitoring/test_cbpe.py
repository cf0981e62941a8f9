"""CBPE's expected metrics against their definitions: the expected ROC AUC equals its double-sum
definition, and with certain labels it is the realized AUC."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_pipeline.monitoring.cbpe import cbpe_roc_auc


def direct_expected_auc(p: np.ndarray, s: np.ndarray) -> float:
    """E[#correctly ordered pairs] / (E[#positives] E[#negatives]), by the definition."""
    above = (s[:, None] > s[None, :]) + 0.5 * (s[:, None] == s[None, :])
    return float((p[:, None] * (1 - p[None, :]) * above).sum() / (p.sum() * (1 - p).sum()))


def test_cbpe_roc_auc_equals_the_expected_auc_by_its_direct_definition():
    rng = np.random.default_rng(0)
    s = np.round(rng.random(300), 2)  # ties on purpose
    p = np.clip(s + rng.normal(0, 0.1, 300), 0, 1)
    assert cbpe_roc_auc(p, s) == pytest.approx(direct_expected_auc(p, s), abs=1e-12)
    # With certain labels (p in {0, 1}) it is the realized AUC.
    from sklearn.metrics import roc_auc_score

    y = (rng.random(300) < s).astype(float)
    assert cbpe_roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
