"""Binary targets with any label type, multi-class and the positive class, on small frames without
Dagster: what the model, its metrics and the gate promise for each task type."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.data.preparation import target_from_feedback
from mlops_pipeline.deployment.gate import evaluate_gate
from mlops_pipeline.spec import ConfigError, DatasetSpec, load_spec
from mlops_pipeline.spec_sections import MetricGate
from mlops_pipeline.training.metrics import metric_task_problem
from mlops_pipeline.training.model import (
    ClassInfo,
    build_pipeline,
    class_info,
    compute_metrics,
    drift_scores,
    predict_scores,
    set_positive_class,
)


def _spec(task="classification", positive=None, gate=None, expression=None, **extra) -> DatasetSpec:
    target = {"name": "risk", **({"positive": positive} if positive is not None else {})}
    if expression:
        target = {"name": "risk", "expression": expression, "drop_missing": ["score"]}
    return DatasetSpec.model_validate({
        "name": "credit", "task": task, "source": {"path": "landing/credit/*.csv", "format": "csv"},
        "target": target, "features": {"categorical": ["job"], "numerical": ["amount"]},
        "contract": "data/contracts/credit.yaml", "split": {"strategy": "random"},
        "model": {"params": {"max_iter": 30}},
        "gate": gate or {"log_loss": {"tolerance": 0.01}}, **extra,
    })


def _frame(n=600, classes=("good", "bad"), weights=(0.7, 0.3), seed=0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    y = rng.choice(np.array(classes, dtype=object), size=n, p=list(weights))
    codes = pd.Index(list(classes)).get_indexer(y)
    X = pd.DataFrame({
        "job": np.where(rng.random(n) < 0.8, np.array(["a", "b", "c", "d"])[codes % 4], "a"),
        "amount": codes * 10.0 + rng.normal(0, 4, n),
    })
    return X, pd.Series(y, name="risk")


def _fit(spec, X, y):
    model = build_pipeline(spec).fit(X, y)
    return model, set_positive_class(model, y, spec)


def test_string_binary_labels_default_to_the_minority_class_as_positive():
    X, y = _frame()  # 'bad' is the minority
    model, info = _fit(_spec(), X, y)
    assert info == ClassInfo(("bad", "good"), 0) and info.positive_label == "bad"
    scores = predict_scores(model, X, "classification")
    assert scores.shape == (len(X),)
    # the score is P(bad): high where the label is bad
    assert scores[(y == "bad").to_numpy()].mean() > 0.7 > scores[(y == "good").to_numpy()].mean()
    metrics = compute_metrics("classification", y.to_numpy(), scores, info)
    assert set(metrics) == {"roc_auc", "log_loss", "brier", "f1", "macro_f1", "accuracy"}
    assert metrics["roc_auc"] > 0.9 and metrics["accuracy"] > 0.85 and metrics["f1"] > 0.8


def test_an_explicit_positive_class_flips_the_score_and_the_binary_metrics():
    X, y = _frame()
    model, info = _fit(_spec(positive="good"), X, y)
    assert info.positive_label == "good"
    good = predict_scores(model, X, "classification")
    bad_model, bad_info = _fit(_spec(), X, y)
    np.testing.assert_allclose(good, 1 - predict_scores(bad_model, X, "classification"))
    f1_good = compute_metrics("classification", y.to_numpy(), good, info)["f1"]
    f1_bad = compute_metrics("classification", y.to_numpy(), 1 - good, bad_info)["f1"]
    assert f1_good != pytest.approx(f1_bad)  # f1 is about the positive class


def test_ties_go_to_the_last_class_in_sorted_order_and_a_derived_target_is_positive_one():
    X, y = _frame(n=400, weights=(0.5, 0.5))
    y = pd.Series(["good", "bad"] * 200, name="risk")
    _, info = _fit(_spec(), X, y)
    assert info.positive_label == "good"
    derived = _spec(expression="score > 3")
    y01 = pd.Series(np.r_[np.ones(300, int), np.zeros(100, int)])  # 1 is the majority here
    _, info = _fit(derived, X, y01)
    assert info == ClassInfo((0, 1), 1)


def test_a_positive_class_that_is_not_in_the_data_fails_training_by_name():
    X, y = _frame()
    with pytest.raises(ValueError, match="target.positive 'ok' is not a class"):
        _fit(_spec(positive="ok"), X, y)


def test_multi_class_scores_metrics_and_gate():
    X, y = _frame(n=900, classes=("low", "mid", "high"), weights=(0.5, 0.3, 0.2))
    spec = _spec(gate={"macro_f1": {"floor": 0.5}, "accuracy": {"floor": 0.5}})
    model, info = _fit(spec, X, y)
    assert info.labels == ("high", "low", "mid") and info.positive is None
    scores = predict_scores(model, X, "classification")
    assert scores.shape == (900, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0)
    metrics = compute_metrics("classification", y.to_numpy(), scores, info)
    assert set(metrics) == {"log_loss", "macro_f1", "accuracy", "roc_auc"}
    assert metrics["accuracy"] > 0.8 and metrics["roc_auc"] > 0.9
    assert evaluate_gate(metrics, None, spec.gate).passed
    worse = compute_metrics("classification", y.to_numpy(), np.roll(scores, 1, axis=1), info)
    assert not evaluate_gate(worse, metrics, spec.gate).passed
    drift = drift_scores(model, X.head(5), "classification")
    assert set(drift) <= {"high", "low", "mid"}
    assert class_info(model) == info


def test_a_binary_only_gate_metric_fails_multi_class_training_and_mismatches_fail_at_load(tmp_path):
    X, y = _frame(n=300, classes=("low", "mid", "high"), weights=(0.5, 0.3, 0.2))
    with pytest.raises(ValueError, match="gate metric 'f1' needs a binary target; this one has 3"):
        _fit(_spec(gate={"f1": {"floor": 0.5}}), X, y)
    assert metric_task_problem("roc_auc", "classification", 3) is None
    with pytest.raises(ValueError, match="gate metric 'roc_auc' needs a classification target"):
        _spec(task="regression", gate={"roc_auc": {"floor": 0.5}})
    config = tmp_path / "c.yaml"
    config.write_text(
        "name: c\ntask: regression\nsource: {path: x/*.csv, format: csv}\ntarget: {name: y}\n"
        "features: {numerical: [a]}\ncontract: c.yaml\nsplit: {strategy: random}\n"
        "gate: {accuracy: {floor: 0.5}}\n")
    with pytest.raises(ConfigError, match="gate metric 'accuracy' needs a classification target"):
        load_spec(config)


def test_feedback_labels_keep_their_type_for_a_plain_target():
    spec = _spec()
    assert list(target_from_feedback(["bad", "good"], spec)) == ["bad", "good"]
    assert target_from_feedback([3, 1.0], spec).dtype.kind == "i"
    flights = load_spec("data/configs/flights.yaml")
    assert list(target_from_feedback([3.0, 20], flights)) == [0, 1]


def test_old_binary_call_sites_keep_their_meaning():
    y = np.array([0, 1, 1, 0])
    s = np.array([0.2, 0.9, 0.4, 0.1])
    assert compute_metrics("classification", y, s) == compute_metrics(
        "classification", y, s, ClassInfo((0, 1), 1))
    assert evaluate_gate({"roc_auc": 0.7}, None, {"roc_auc": MetricGate(floor=0.6)}).passed


def test_a_multi_class_prediction_column_drifts_as_a_category():
    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN, compute_drift, prediction_kind
    from mlops_pipeline.spec_sections import DriftSpec

    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"amount": rng.normal(size=2000),
                        PREDICTION_COLUMN: rng.choice(["high", "low", "mid"], 2000, p=[0.2, 0.5, 0.3])})
    cur = pd.DataFrame({"amount": rng.normal(size=2000),
                        PREDICTION_COLUMN: rng.choice(["high", "low", "mid"], 2000, p=[0.6, 0.2, 0.2])})
    assert prediction_kind(ref, [], ["amount", PREDICTION_COLUMN]) == ([PREDICTION_COLUMN], ["amount"])
    result = compute_drift(ref, cur, [], ["amount", PREDICTION_COLUMN], DriftSpec())
    assert result.prediction.method == "jensenshannon" and result.prediction.drifted
    assert result.drifted_columns == []


def test_reproduce_compares_multi_class_predictions_row_by_row():
    from mlops_pipeline.training.reproduce import compare_predictions

    a = np.array([[0.2, 0.8, 0.0], [0.5, 0.25, 0.25], [1.0, 0.0, 0.0]])
    b = a.copy()
    b[1, 2] += 1e-3
    diff = compare_predictions(a, b)
    assert (diff.rows, diff.differing_rows) == (3, 1) and diff.max_abs_diff == pytest.approx(1e-3)
    assert compare_predictions(a, a.copy()).identical
