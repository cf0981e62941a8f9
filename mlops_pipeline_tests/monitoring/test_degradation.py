"""The gate line a live model must stay on the right side of, and the verdicts on estimated and
realized metrics against it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlops_pipeline.monitoring.cbpe import cbpe_roc_auc
from mlops_pipeline.monitoring.degradation import degradation, realized_drop, threshold
from mlops_pipeline.monitoring.estimation import ESTIMABLE, Estimate
from mlops_pipeline.spec_sections import MetricGate
from mlops_pipeline.training.metrics import GREATER_IS_BETTER


def test_thresholds_take_the_stricter_of_floor_and_holdout_less_tolerance():
    rule = MetricGate(floor=0.6, tolerance=0.01)
    assert threshold("roc_auc", rule, {"roc_auc": 0.70}) == pytest.approx(0.69)
    assert threshold("roc_auc", rule, {"roc_auc": 0.605}) == pytest.approx(0.6)
    assert threshold("log_loss", MetricGate(tolerance=0.02), {"log_loss": 0.5}) == pytest.approx(0.52)
    assert threshold("mae", MetricGate(), None) is None
    low = {"roc_auc": Estimate("roc_auc", 0.62, 0.60, 0.64, 500)}
    straddling = {"roc_auc": Estimate("roc_auc", 0.66, 0.62, 0.70, 500)}
    gate = {"roc_auc": rule}
    assert degradation(low, gate, {"roc_auc": 0.70}) and not degradation(straddling, gate, {"roc_auc": 0.70})
    assert realized_drop({"roc_auc": 0.65}, gate, {"roc_auc": 0.70})
    assert not realized_drop({"roc_auc": 0.695}, gate, {"roc_auc": 0.70})
    assert all(m in GREATER_IS_BETTER for kind in ESTIMABLE.values() for m in kind)
    assert math.isnan(cbpe_roc_auc(np.zeros(5), np.arange(5.0)))
