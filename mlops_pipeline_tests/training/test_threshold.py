"""`model.threshold`: a binary target's decision threshold chosen on a validation split carved from
the train split, saved with the model, applied by the gate's metrics, serving and the estimates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_pipeline.data.preparation import SPLIT_COLUMN, prepare
from mlops_pipeline.spec import ConfigError, load_spec
from mlops_pipeline.spec_sections import ThresholdSpec
from mlops_pipeline.training.fit import fit_and_score
from mlops_pipeline.training.model import ClassInfo, class_info, compute_metrics
from mlops_pipeline.training.threshold import choose, validation_mask

FLIGHTS = Path("data/configs/flights.yaml")


def imbalanced_spec(tmp_path: Path, **model: object):
    """Flights arriving more than an hour late: about 7% of January-February's rows."""
    raw = yaml.safe_load(FLIGHTS.read_text())
    raw["contract"] = str(Path(raw["contract"]).resolve())
    raw["target"]["expression"] = "arr_delay > 60"
    raw["model"] = {"seed": 42, **model}
    config = tmp_path / "late.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_spec(config)


def test_each_objective_picks_its_own_threshold():
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1, 0, 1])
    s = np.array([.05, .1, .2, .3, .35, .4, .6, .7, .8, .9])
    # F1 is best predicting positive from 0.35 up: tp 4, fp 2, fn 0.
    assert choose(y, s, ThresholdSpec(objective="f1")) == pytest.approx(0.35)
    # Recall at least 0.75 (3 of 4): from 0.6 up at precision 3/4 is the best that keeps it.
    assert choose(y, s, ThresholdSpec(precision_at_recall=0.75)) == pytest.approx(0.6)
    # A false negative ten times a false positive: catch every positive.
    assert choose(y, s, ThresholdSpec(cost={"fp": 1, "fn": 10})) == pytest.approx(0.35)
    # A false positive ten times a false negative: predict positive only at the very top, or never.
    assert choose(y, s, ThresholdSpec(cost={"fp": 10, "fn": 1})) == pytest.approx(0.9)


def test_a_threshold_rule_is_exactly_one_and_only_for_classification(tmp_path):
    with pytest.raises(ConfigError, match="set exactly one of"):
        imbalanced_spec(tmp_path, threshold={"objective": "f1", "precision_at_recall": 0.5})
    with pytest.raises(ConfigError, match="precision_at_recall"):
        imbalanced_spec(tmp_path, threshold={"precision_at_recall": 1.5})
    raw = yaml.safe_load(Path("data/configs/randhie.yaml").read_text())
    raw["contract"] = str(Path(raw["contract"]).resolve())
    raw["model"]["threshold"] = {"objective": "f1"}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="model.threshold: only for a binary target"):
        load_spec(tmp_path / "r.yaml")


def test_the_validation_rows_are_chosen_by_content_and_never_from_the_holdout(tmp_path, flights):
    spec = imbalanced_spec(tmp_path, threshold={"objective": "f1"})
    frame = prepare(flights[flights["month"] == 1].sample(3000, random_state=2), spec).frame
    train = frame[frame[SPLIT_COLUMN] == "train"]
    X, y = train[spec.features.columns], train[spec.target.name]
    mask = validation_mask(X, y, spec)
    assert 0.15 < mask.mean() < 0.25
    # The same rows in another order (and index) are set aside the same.
    order = np.random.default_rng(0).permutation(len(X))
    shuffled = validation_mask(X.iloc[order].reset_index(drop=True), y.iloc[order], spec)
    np.testing.assert_array_equal(shuffled, mask[order])


@pytest.fixture(scope="module")
def late(flights, tmp_path_factory):
    spec = imbalanced_spec(tmp_path_factory.mktemp("late"),
                           estimator="sklearn.linear_model.LogisticRegression",
                           params={"max_iter": 300}, threshold={"objective": "f1"})
    frame = prepare(flights[flights["month"].isin([1, 2])].sample(8000, random_state=1), spec).frame
    return spec, frame, fit_and_score(frame, spec, spec.model.seed)


def test_on_an_imbalanced_target_the_chosen_threshold_lifts_f1_from_zero(late):
    spec, frame, fitted = late
    assert frame[spec.target.name].mean() < 0.10
    classes = class_info(fitted.model)
    assert 0.02 < classes.threshold < 0.5
    at_half = compute_metrics("classification", fitted.y_hold, fitted.scores,
                              ClassInfo(classes.labels, classes.positive))
    assert at_half["f1"] == 0.0
    assert fitted.metrics["f1"] > 0.15  # training's holdout metrics apply the stored threshold
    from mlops_pipeline.deployment.scoring import score_model

    regated = score_model(fitted.model, frame, spec)  # how the gate scores a registered version
    assert regated["f1"] == pytest.approx(fitted.metrics["f1"])
    assert fitted.metrics["roc_auc"] == at_half["roc_auc"]  # probabilities are unchanged


def test_served_predictions_and_the_estimates_follow_the_stored_threshold(late):
    from mlops_pipeline.serving.loader import LoadedModel
    from mlops_pipeline.training.fit import performance_estimator

    spec, _, fitted = late
    threshold = class_info(fitted.model).threshold
    served = LoadedModel("late", "1", fitted.model, "classification").score(fitted.X_hold)
    np.testing.assert_array_equal(served.probability, fitted.scores)
    np.testing.assert_array_equal(served.prediction, (fitted.scores >= threshold).astype(int))
    assert served.prediction.sum() > 0
    estimator = performance_estimator(fitted, spec, spec.model.seed)
    assert estimator.threshold == threshold
    from mlops_pipeline.monitoring.estimation import PerformanceEstimator, estimate_classification

    assert PerformanceEstimator.from_bytes(estimator.to_bytes()).threshold == threshold
    f1 = estimate_classification(estimator, fitted.scores, metrics=["f1"], corrected=False)["f1"]
    at_half = replace(estimator, threshold=0.5)
    f1_at_half = estimate_classification(at_half, fitted.scores, metrics=["f1"], corrected=False)["f1"]
    assert f1.value > 0.1 and f1_at_half.value < 0.05


def test_labels_are_compared_with_the_estimates_at_the_same_threshold():
    from types import SimpleNamespace

    from mlops_pipeline.monitoring.champion import ChampionEstimator
    from mlops_pipeline.monitoring.estimates import compare_realized
    from mlops_pipeline.monitoring.estimation_fit import fit_classification_estimator
    from mlops_pipeline.spec_sections import MetricGate

    rng = np.random.default_rng(0)
    s = rng.random(3000) * 0.4  # never 0.5: at 0.5 nothing would be answered positive
    est = fit_classification_estimator(s, (rng.random(3000) < s).astype(int),
                                       ClassInfo((0, 1), 1, threshold=0.2))
    assert est.threshold == 0.2
    champion = ChampionEstimator("1", est, {"f1": 0.4}, "stored")
    spec = SimpleNamespace(task="classification", gate={"f1": MetricGate(floor=0.1)},
                           target=SimpleNamespace(expression=None, name="y"))
    p = rng.random(600) * 0.4
    rows = pd.DataFrame({"probability": p, "label": (rng.random(600) < p).astype(int)})
    compared = compare_realized(spec, champion, rows, seed=0)
    assert abs(compared.errors["f1"]) < 0.1 and compared.drops == [], compared
