"""`model.estimator`: any scikit-learn-compatible estimator behind the preprocessing that fits it,
checked at config load, on a slice of the real flights table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlops_pipeline.data.preparation import prepare
from mlops_pipeline.spec import load_spec
from mlops_pipeline.training.estimators import build_model, skops_trusted_types
from mlops_pipeline.training.fit import fit_and_score
from mlops_pipeline.training.model import predict_scores

FLIGHTS = Path("data/configs/flights.yaml")


@pytest.fixture(scope="module")
def frame(flights):
    spec = load_spec(FLIGHTS)
    return prepare(flights[flights["month"] <= 2].sample(4000, random_state=3), spec).frame


def test_without_an_estimator_the_default_pipeline_is_unchanged():
    from mlops_pipeline.training.model import build_pipeline

    spec = load_spec(FLIGHTS)
    assert spec.model.estimator is None and spec.model.preprocessing == "auto"
    assert repr(build_model(spec)) == repr(build_pipeline(spec))


@pytest.mark.parametrize(("model", "message"), [
    ({"estimator": "sklearn.linear_model.LogisticRegresion"}, "not a scikit-learn-compatible"),
    ({"estimator": "nosuchpackage.Model"}, "cannot import 'nosuchpackage'"),
    ({"estimator": "LogisticRegression"}, "not an import path"),
    ({"estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iters": 5}},
     "['max_iters'] not parameters of LogisticRegression"),
    ({"estimator": "sklearn.linear_model.LogisticRegression", "params": {"C": -1.0}},
     "model.params: The 'C' parameter"),
    ({"estimator": "sklearn.linear_model.Ridge"}, "is for regression, the task is classification"),
    ({"estimator": "lightgbm.LGBMClassifier", "preprocessing": "scaled"}, "model.preprocessing"),
])
def test_a_wrong_estimator_path_or_parameter_is_one_line_at_config_load(config_error, model, message):
    text = config_error(FLIGHTS, **model)
    assert message in text, text


def test_linear_models_get_one_hot_and_scaling_and_boosters_native_categoricals(spec_with):
    linear = build_model(spec_with(FLIGHTS, estimator="sklearn.linear_model.LogisticRegression"))
    encoders = {name: type(t).__name__ for name, t, _ in linear.named_steps["features"].transformers}
    assert encoders["categorical"] == "OneHotEncoder" and "StandardScaler" in repr(linear)
    booster = build_model(spec_with(FLIGHTS, estimator="lightgbm.LGBMClassifier"))
    assert [name for name, _ in booster.steps] == ["features", "categoricals", "model"]
    assert "StandardScaler" not in repr(booster)
    forced = build_model(spec_with(FLIGHTS, estimator="sklearn.linear_model.LogisticRegression",
                                      preprocessing="ordinal"))
    assert type(forced.named_steps["features"].transformers[0][1]).__name__ == "OrdinalEncoder"


@pytest.mark.parametrize("estimator", ["sklearn.linear_model.LogisticRegression",
                                       "lightgbm.LGBMClassifier", "xgboost.XGBClassifier"])
def test_any_estimator_trains_scores_and_round_trips_through_skops(spec_with, frame, estimator):
    import skops.io as sio

    params = {"max_iter": 300} if "sklearn" in estimator else {"n_estimators": 30, "max_depth": 3}
    spec = spec_with(FLIGHTS, estimator=estimator, params=params)
    fitted = fit_and_score(frame, spec, spec.model.seed)
    assert fitted.metrics["roc_auc"] > 0.6, fitted.metrics
    data = sio.dumps(fitted.model)
    trusted = skops_trusted_types(fitted.model)
    assert set(sio.get_untrusted_types(data=data)) <= set(trusted)
    loaded = sio.loads(data, trusted=trusted)
    np.testing.assert_array_equal(predict_scores(loaded, fitted.X_hold, "classification"), fitted.scores)
    # An unseen category scores instead of failing (one-hot ignores it, the codes make it missing).
    odd = fitted.X_hold.head(3).copy()
    odd["carrier"] = "ZZ"
    assert np.isfinite(predict_scores(fitted.model, odd, "classification")).all()


def test_the_model_fields_at_their_defaults_leave_a_configs_fingerprint_as_it_was(spec_with):
    import hashlib
    import json

    spec = load_spec(FLIGHTS)
    before = spec.model_dump(mode="json")
    for key in ("estimator", "preprocessing", "threshold", "train", "search"):
        del before["model"][key]  # the spec as it was dumped before these fields existed
    for key in ("segments", "owner", "runbook_url"):  # never fingerprinted: they do not train
        before.pop(key, None)
    legacy = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert spec.fingerprint() == legacy
    chosen = spec_with(FLIGHTS, estimator="sklearn.linear_model.LogisticRegression")
    assert chosen.fingerprint() != spec_with(FLIGHTS).fingerprint()
