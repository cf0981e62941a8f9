"""The eval gate: floors, no regression against the champion, and the first model."""

from __future__ import annotations

import math

import pytest

from mlops_pipeline.deployment.gate import evaluate_gate
from mlops_pipeline.spec_sections import MetricGate

POLICY = {"roc_auc": MetricGate(floor=0.6, tolerance=0.01), "log_loss": MetricGate(tolerance=0.01)}


def test_first_model_passes_on_the_floor_alone():
    result = evaluate_gate({"roc_auc": 0.65, "log_loss": 0.9}, None, POLICY)
    assert result.passed and result.meets_floor and result.no_regression


def test_below_the_floor_fails_and_says_why():
    result = evaluate_gate({"roc_auc": 0.55, "log_loss": 0.5}, None, POLICY)
    assert not result.passed and not result.meets_floor and result.no_regression
    assert result.failures() == ["roc_auc=0.5500 is not >= floor 0.6"]


def test_regression_beyond_tolerance_fails_within_tolerance_passes():
    champion = {"roc_auc": 0.70, "log_loss": 0.50}
    worse = evaluate_gate({"roc_auc": 0.68, "log_loss": 0.50}, champion, POLICY, "3")
    assert worse.meets_floor and not worse.no_regression
    assert "regresses against champion v3" in worse.failures()[0]
    slightly = evaluate_gate({"roc_auc": 0.695, "log_loss": 0.505}, champion, POLICY, "3")
    assert slightly.passed


def test_lower_is_better_metrics_regress_upwards():
    champion = {"roc_auc": 0.70, "log_loss": 0.50}
    result = evaluate_gate({"roc_auc": 0.71, "log_loss": 0.52}, champion, POLICY)
    assert not result.no_regression
    assert [v.metric for v in result.verdicts if not v.passed] == ["log_loss"]
    floor = evaluate_gate({"mae": 12.0}, None, {"mae": MetricGate(floor=10.0)})
    assert not floor.meets_floor


def test_nan_never_passes_and_unknown_metrics_are_refused():
    assert not evaluate_gate({"roc_auc": math.nan, "log_loss": 0.5}, None, POLICY).passed
    with pytest.raises(ValueError, match="unknown"):
        evaluate_gate({"precision": 0.9}, None, {"precision": MetricGate(floor=0.5)})
    with pytest.raises(KeyError, match="log_loss"):
        evaluate_gate({"roc_auc": 0.7}, None, POLICY)
