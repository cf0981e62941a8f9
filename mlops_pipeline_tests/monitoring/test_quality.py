"""Quality of logged answers on small frames: the score a logged answer carries, metrics as on the
holdout, calibration, and the board's daily quality. No Dagster, no server."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.monitoring import quality as Q
from mlops_pipeline.training.model import ClassInfo


def _spec(task: str = "classification") -> SimpleNamespace:
    return SimpleNamespace(task=task, target=SimpleNamespace(expression=None, name="y"))


def _binary_log(n: int = 4) -> pd.DataFrame:
    p = np.linspace(0.1, 0.9, n)
    return pd.DataFrame({
        "role": ["champion"] * n, "model_version": ["1"] * n,
        "ts": pd.date_range("2026-03-01", periods=n, freq="h", tz="UTC"),
        "prediction": (p >= 0.5).astype(int), "probability": p,
        "probabilities": [{0: 1 - v, 1: v} for v in p], "label": [0, 1] * (n // 2),
    })


def test_the_score_column_is_the_probability_for_a_classifier_and_the_value_for_regression():
    assert Q.score_column("classification") == "probability"
    assert Q.score_column("regression") == "prediction"


def test_binary_answers_score_by_the_positive_class_named_last_in_their_probabilities():
    rows = pd.DataFrame({"probability": [0.2, 0.7, 0.9],
                         "probabilities": [{"no": 0.8, "yes": 0.2}, {"no": 0.3, "yes": 0.7},
                                           {"no": 0.1, "yes": 0.9}]})
    scores, classes = Q.quality_scores(rows)
    np.testing.assert_allclose(scores, [0.2, 0.7, 0.9])
    assert classes == ClassInfo(("no", "yes"), 1)


def test_multiclass_answers_become_a_matrix_over_the_union_of_their_classes():
    rows = pd.DataFrame({"probability": [0.6, 0.5],
                         "probabilities": [{"a": 0.6, "b": 0.4}, {"b": 0.5, "c": 0.3, "a": 0.2}]})
    scores, classes = Q.quality_scores(rows)
    assert classes.labels == ("a", "b", "c") and classes.positive is None
    np.testing.assert_allclose(scores, [[0.6, 0.4, 0.0], [0.2, 0.5, 0.3]])


def test_answers_logged_without_their_classes_score_by_the_probability_with_default_classes():
    rows = pd.DataFrame({"probability": [0.3, 0.8], "probabilities": [None, {0: 0.2, 1: 0.8}]})
    scores, classes = Q.quality_scores(rows)
    np.testing.assert_allclose(scores, [0.3, 0.8])
    assert classes is None


def test_regression_answers_score_by_their_value_without_classes():
    scores, classes = Q.logged_scores(pd.DataFrame({"prediction": [1.5, 2.0]}), "regression")
    np.testing.assert_allclose(scores, [1.5, 2.0])
    assert classes is None


def test_drift_predictions_match_the_reference_column_the_champion_was_scored_into():
    rows = pd.DataFrame({"prediction": [3.0, 1], "probability": [0.7, 0.4]})
    numeric = pd.Series([0.1, 0.2])
    np.testing.assert_allclose(Q.drift_predictions(rows, numeric, "classification"), [0.7, 0.4])
    classes = pd.Series(["1", "3"], dtype=object)
    assert list(Q.drift_predictions(rows, classes, "classification")) == ["3", "1"]
    np.testing.assert_allclose(Q.drift_predictions(rows, numeric, "regression"), [3.0, 1.0])


def test_a_perfectly_calibrated_score_has_no_calibration_error():
    y = np.array([0, 0, 1, 1] * 5, dtype=float)
    p = np.array([0.0, 0.0, 1.0, 1.0] * 5)
    curve, ece = Q.reliability(y, p)
    assert ece == pytest.approx(0.0)
    assert sum(b["rows"] for b in curve) == len(y)


def test_an_overconfident_score_has_the_gap_as_its_calibration_error():
    curve, ece = Q.reliability(np.array([0, 1, 0, 1], dtype=float), np.full(4, 0.9))
    assert ece == pytest.approx(0.4)
    assert curve == [{"mean_predicted": pytest.approx(0.9), "observed_rate": 0.5, "rows": 4.0}]


def test_multiclass_calibration_is_top_label_against_how_often_the_top_class_was_right():
    scores = np.array([[0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.1, 0.9]])
    y = np.array(["a", "b", "b", "b"])
    _, ece = Q.calibration(y, scores, ClassInfo(("a", "b"), None))
    _, direct = Q.reliability(np.array([1.0, 0.0, 1.0, 1.0]), scores.max(axis=1))
    assert ece == pytest.approx(direct)


def test_labelled_quality_reports_metrics_per_version_with_enough_rows_and_calibration():
    log = pd.concat([_binary_log(40), _binary_log(4).assign(model_version="2")], ignore_index=True)
    out = Q.labelled_quality(log, _spec())
    assert {"roc_auc", "accuracy"} <= set(out.metrics)
    assert list(out.by_version) == ["1"]  # v2 has 4 rows, under MIN_ROWS_PER_VERSION
    assert out.calibration == "positive class" and out.expected_calibration_error is not None
    assert out.reliability_curve


def test_labelled_quality_of_regression_has_no_calibration():
    rows = pd.DataFrame({"model_version": ["1"] * 3, "prediction": [1.0, 2.0, 4.0], "label": [1, 2, 3]})
    out = Q.labelled_quality(rows, _spec("regression"))
    assert out.metrics["mae"] == pytest.approx(1 / 3)
    assert out.calibration == "" and out.reliability_curve == []


def test_daily_quality_has_a_row_per_labelled_day_and_skips_shadow_answers_and_one_class_days():
    day1 = _binary_log(4)
    day2 = _binary_log(4).assign(ts=lambda f: f["ts"] + pd.Timedelta(days=1), label=1)  # one class
    shadow = _binary_log(4).assign(role="shadow", label=np.nan)
    quality = Q.daily_quality(pd.concat([day1, day2, shadow], ignore_index=True), _spec())
    assert list(quality["day"].astype(str)) == ["2026-03-01"]
    assert set(quality.columns) == {"day", "roc_auc", "brier", "accuracy"}


def test_daily_quality_of_an_empty_log_is_empty():
    assert Q.daily_quality(pd.DataFrame(), _spec()).empty


def test_realized_f1_and_accuracy_are_those_of_the_served_decisions_at_the_versions_threshold():
    """Two versions served with their own stored thresholds (0.3 and 0.7): the threshold-dependent
    metrics are those of what each answered, not of a 0.5 cut; the ranking metrics are unchanged."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    rng = np.random.default_rng(3)
    p = rng.random(200)
    label = (rng.random(200) < p).astype(int)
    cut = np.where(np.arange(200) < 100, 0.3, 0.7)
    served = (p >= cut).astype(int)
    log = pd.DataFrame({
        "role": ["champion"] * 200, "model_version": np.where(np.arange(200) < 100, "1", "2"),
        "ts": pd.date_range("2026-03-01", periods=200, freq="min", tz="UTC"),
        "prediction": ["yes" if s else "no" for s in served], "probability": p,
        "probabilities": [{"no": 1 - v, "yes": v} for v in p],
        "label": ["yes" if v else "no" for v in label]})
    spec = SimpleNamespace(task="classification",
                           target=SimpleNamespace(expression=None, name="y", positive="yes"))
    out = Q.labelled_quality(log, spec)
    assert out.metrics["f1"] == pytest.approx(f1_score(label, served))
    assert out.metrics["accuracy"] == pytest.approx(accuracy_score(label, served))
    assert out.metrics["f1"] != pytest.approx(f1_score(label, p >= 0.5))
    assert out.metrics["roc_auc"] == pytest.approx(roc_auc_score(label, p))
    first = slice(0, 100)
    assert out.by_version["1"]["accuracy"] == pytest.approx(accuracy_score(label[first], served[first]))
    day = Q.daily_quality(log, spec)
    assert day["accuracy"].iloc[0] == pytest.approx(accuracy_score(label, served))


def test_answers_logged_without_probabilities_are_judged_on_their_decisions_saying_what_is_unmeasured():
    """A classifier champion answering labels only (a pyfunc without predict_proba) is logged with
    no probability: its quality is that of its decisions, and the floors it cannot meet are named."""
    from sklearn.metrics import accuracy_score, f1_score

    log = _binary_log(8).assign(probability=np.nan, probabilities=None)
    spec = SimpleNamespace(**vars(_spec()), gate={"roc_auc": SimpleNamespace(floor=0.6),
                                                 "accuracy": SimpleNamespace(floor=0.4),
                                                 "log_loss": SimpleNamespace(floor=None)})
    quality = Q.labelled_quality(log, spec)
    assert set(quality.metrics) == set(Q.DECISION_METRICS)
    assert quality.metrics["accuracy"] == accuracy_score(log["label"], log["prediction"])
    assert quality.metrics["f1"] == f1_score(log["label"], log["prediction"])
    assert quality.calibration == "" and quality.expected_calibration_error is None
    line = Q.unmeasured(quality.metrics, spec)
    assert line == ("roc_auc not measured: answers logged without class probabilities (the champion "
                    "answers labels only)")
    assert Q.unmeasured(Q.labelled_quality(_binary_log(8), spec).metrics, spec) == ""
