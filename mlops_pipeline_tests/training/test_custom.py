"""`model.train: package.module:function`: the team's own training code, checked at config load and
run on the train and validation frames carved from the train split (never the holdout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.spec import load_spec

EXAMPLE = Path("examples/fair_train.yaml")


@pytest.mark.parametrize(("model", "message"), [
    ({"train": "examples.train_logistic"}, "is not package.module:function"),
    ({"train": "examples.no_such_module:train"}, "cannot import 'examples.no_such_module'"),
    ({"train": "examples.train_logistic:no_such_function"}, "has no 'no_such_function'"),
    ({"train": "examples.train_logistic:pd"}, "is not a function"),
    ({"train": "examples.train_logistic:train", "estimator": "sklearn.linear_model.LogisticRegression"},
     "model.train and model.estimator are mutually exclusive"),
    ({"train": "examples.train_logistic:train",
      "search": {"trials": 2, "space": {"C": {"type": "float", "low": 0.1, "high": 1}}}},
     "model.search tunes model.estimator or the default model"),
])
def test_a_wrong_train_function_is_one_line_at_config_load(config_error, model, message):
    text = config_error(EXAMPLE, **model)
    assert message in text, text


def test_the_example_config_loads_and_keeps_its_fingerprint_stable():
    spec = load_spec(EXAMPLE)
    assert spec.model.train == "examples.train_logistic:train"
    raw = spec.model_dump(mode="json")
    raw["model"].pop("search")  # a field at its default never changes the fingerprint
    from mlops_pipeline.spec import DatasetSpec

    assert DatasetSpec.model_validate(raw).fingerprint() == spec.fingerprint()


def _frames():
    import statsmodels.api as sm

    data = sm.datasets.fair.load_pandas().data.sample(1500, random_state=0)
    spec = load_spec(EXAMPLE)
    X = data[spec.features.columns].reset_index(drop=True)
    y = pd.Series((data["affairs"] > 0).astype("int64").to_numpy())
    return spec, X, y


def test_the_function_gets_train_and_validation_frames_and_what_it_returns_is_checked():
    from mlops_pipeline.training.custom import check_returned, fit_custom
    from mlops_pipeline.training.threshold import validation_mask

    spec, X, y = _frames()
    model, classes = fit_custom(X, y, spec, seed=3)
    assert classes.labels == (0, 1) and classes.positive_label == 1
    mask = validation_mask(X, y, spec)
    assert 0.1 < mask.mean() < 0.3  # the default 0.2 of the rows, by content hash
    # Deterministic given the seed: the same function, frames and seed give the same model.
    again, _ = fit_custom(X, y, spec, seed=3)
    np.testing.assert_array_equal(model.predict_proba(X), again.predict_proba(X))

    class NoProbabilities:
        classes_ = np.array([0, 1])

        def predict(self, X):
            return np.zeros(len(X))

    with pytest.raises(ValueError, match="returned NoProbabilities, which has no predict_proba"):
        check_returned(NoProbabilities(), spec)


def test_with_a_threshold_it_is_chosen_on_the_validation_frame_with_the_returned_model(spec_with):
    from mlops_pipeline.training.custom import fit_custom

    _, X, y = _frames()
    spec = spec_with(EXAMPLE, train="examples.train_logistic:train", threshold={"objective": "f1"})
    model, classes = fit_custom(X, y, spec, seed=3)
    assert classes.threshold is not None and classes.threshold != 0.5


def test_a_returned_python_model_is_used_like_an_estimator_and_needs_probabilities_to_classify(spec_with):
    import mlflow

    from mlops_pipeline.training.custom import check_returned, fit_custom
    from mlops_pipeline.training.model import class_info, predict_scores

    _, X, y = _frames()
    spec = spec_with(EXAMPLE, train="examples.train_pyfunc:train", threshold={"objective": "f1"})
    model, classes = fit_custom(X, y, spec, seed=3)
    assert model.flavor == "python_function" and model.has_proba
    # The positive class and threshold are saved on the PythonModel itself: pickled with it.
    python_model = model.get_raw_model()
    assert class_info(python_model) == classes and classes.threshold not in (None, 0.5)
    np.testing.assert_array_equal(predict_scores(model, X, "classification"),
                                  python_model.predict_proba(X)[:, 1])
    assert set(model.predict(X)) <= {0, 1}

    class LabelsOnly(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return np.ones(len(model_input), dtype=int)

    with pytest.raises(ValueError) as err:
        check_returned(LabelsOnly(), spec)
    text = str(err.value)
    assert "\n" not in text and "returned the PythonModel LabelsOnly without predict_proba" in text, text


def train_regression_python_model(train: pd.DataFrame, validation: pd.DataFrame, spec, seed: int):
    """A `model.train` function returning a regression `PythonModel` (used by the test below)."""
    import mlflow
    from sklearn.linear_model import Ridge

    features, target = spec.features.columns, spec.target.name
    fitted = Ridge(random_state=seed).fit(train[features], train[target])

    class Visits(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return fitted.predict(model_input[features])

    return Visits()


def test_a_regression_python_model_is_fitted_scored_and_estimated_before_labels(spec_with):
    """Regression: the PythonModel's `predict` answers the value; the loss model of the estimates
    before labels, having no pipeline encoding to borrow, uses its numeric features as they are."""
    import statsmodels.api as sm

    from mlops_pipeline.data.preparation import prepare
    from mlops_pipeline.training.fit import fit_and_score, performance_estimator

    spec = spec_with(Path("data/configs/randhie.yaml"),
                     train="mlops_pipeline_tests.training.test_custom:train_regression_python_model")
    frame = sm.datasets.randhie.load_pandas().data.sample(1500, random_state=0)
    fitted = fit_and_score(prepare(frame, spec).frame, spec, seed=3)
    assert fitted.model.flavor == "python_function" and fitted.classes is None
    assert 0 < fitted.metrics["mae"] < 10 and np.isfinite(fitted.scores).all()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "openmp"):  # the loss models' small HGB fits: 35x slower when 2
        estimator = performance_estimator(fitted, spec, seed=3)  # OpenMP threads share 2 busy cores
    assert estimator.kind == "regression"
    from mlops_pipeline.monitoring.estimation import estimate_regression

    estimates = estimate_regression(estimator, fitted.model, fitted.X_hold, fitted.scores)
    assert np.isfinite(estimates["mae"].value) and estimates["mae"].lower <= estimates["mae"].value
