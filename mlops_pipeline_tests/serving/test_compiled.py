"""The compiled model (`serving/compiled.py`, `serving/compiled_trees.py`) answers with the same
bits as the pipeline it was compiled from — over property-based corpora of records (unseen and
missing categories, missing numbers, missing timestamps) on the loop's own pipelines for the
flights, `fair` and `randhie` configs and with the team's own LightGBM, logistic regression and
ridge models (one-hot, imputed, scaled), and over random HistGradientBoosting models (binary,
multi-class, Poisson regression) fed missing, negative, unseen, fractional and out-of-range
category codes. What it cannot compile is served by the pipeline itself, errors included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_pipeline.data.preparation import prepare, xy
from mlops_pipeline.serving.compiled import CompiledModel, compile_model
from mlops_pipeline.serving.compiled_trees import MAX_ROWS, CompiledTrees, compile_trees
from mlops_pipeline.spec import load_spec
from mlops_pipeline.training.estimators import build_model

PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _tables(flights: pd.DataFrame) -> dict[str, pd.DataFrame]:
    fair = sm.datasets.fair.load_pandas().data
    return {"flights": flights[flights["month"] <= 2].sample(4000, random_state=1),
            "fair": fair.sample(3000, random_state=1),
            "randhie": sm.datasets.randhie.load_pandas().data.sample(3000, random_state=1)}


#: The team's own estimators (`model.estimator`), each behind the preprocessing the loop builds for it.
OWN = {"lightgbm": "lightgbm.LGBMClassifier", "ridge": "sklearn.linear_model.Ridge",
       "logistic regression": "sklearn.linear_model.LogisticRegression"}
PARAMS = {"lightgbm": {"n_estimators": 40}, "logistic regression": {"max_iter": 300}, "ridge": {}}


@pytest.fixture(scope="module", params=["flights", "fair", "randhie", "flights with lightgbm",
                                        "flights with logistic regression", "randhie with ridge"])
def fitted(request, flights, tmp_path_factory):
    """(spec, the loop's pipeline fitted on the table's train rows, its holdout features); "with"
    cases are the team's own estimators: a booster behind its native-categoricals step, linear
    models behind one-hot encoding, imputation with missing-value indicators and scaling."""
    table, _, own = request.param.partition(" with ")
    config = Path(f"data/configs/{table}.yaml")
    if own:
        raw = yaml.safe_load(config.read_text())
        raw["contract"] = str(Path(raw["contract"]).resolve())
        raw["model"] = {"seed": 7, "estimator": OWN[own], "params": PARAMS[own]}
        config = tmp_path_factory.mktemp("own") / f"{table}.yaml"
        config.write_text(yaml.safe_dump(raw))
    spec = load_spec(config)
    frame = prepare(_tables(flights)[table], spec).frame
    X, y = xy(frame, spec, "train")
    holdout, _ = xy(frame, spec, "holdout")
    return spec, build_model(spec).fit(X, y), holdout.reset_index(drop=True)


def _answers(model, X: pd.DataFrame, method: str) -> np.ndarray:
    return getattr(model, method)(X)


@given(data=st.data())
@PROPERTY
def test_the_loops_pipeline_compiles_to_the_same_matrix_and_the_same_answers(fitted, data):
    spec, pipeline, holdout = fitted
    compiled = compile_model(pipeline, holdout.head(5))
    assert isinstance(compiled, CompiledModel)
    rows = data.draw(st.lists(st.integers(0, len(holdout) - 1), min_size=1, max_size=MAX_ROWS + 20))
    X = holdout.iloc[rows].reset_index(drop=True).copy()
    for i in range(len(X)):
        for col in data.draw(st.lists(st.sampled_from(spec.features.columns), max_size=3), label=f"row {i}"):
            if col in spec.features.categorical:
                X.loc[i, col] = data.draw(st.sampled_from([None, "never seen", X.loc[0, col]]))
            elif col == spec.time_column or col in spec.features.datetime_parts:
                X.loc[i, col] = pd.NaT
            else:
                X.loc[i, col] = np.nan
    expected = pipeline.steps[0][1].transform(X)
    np.testing.assert_array_equal(compiled.features(X), expected)  # NaN where the pipeline has NaN
    method = "predict_proba" if spec.task == "classification" else "predict"
    ours, theirs = _answers(compiled, X, method), _answers(pipeline, X, method)
    assert np.array_equal(ours, theirs, equal_nan=True)  # bit for bit


def _random_model(kind: str):
    """A HistGradientBoosting model on 3 features, the first two categorical (codes 0-19 and 0-59,
    a few codes never seen in training), with missing values in the first and third."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    rng = np.random.default_rng(7)
    n = 4000
    X = np.column_stack([rng.choice([c for c in range(20) if c not in (5, 11)], n).astype(float),
                         rng.integers(0, 60, n).astype(float), rng.normal(size=n)])
    X[rng.random(n) < 0.08, 0] = np.nan
    X[rng.random(n) < 0.1, 2] = np.nan
    signal = (np.nan_to_num(X[:, 0]) % 3) + (np.nan_to_num(X[:, 2]) > 0.2) + (X[:, 1] > 30)
    common = {"categorical_features": [0, 1], "max_iter": 40, "random_state": 0}
    if kind == "binary":
        return HistGradientBoostingClassifier(**common).fit(X, signal > 1.5)
    if kind == "multi-class":
        return HistGradientBoostingClassifier(**common).fit(X, signal.astype(int))
    return HistGradientBoostingRegressor(loss="poisson", **common).fit(X, signal + rng.random(n))


@pytest.fixture(scope="module", params=["binary", "multi-class", "regression"])
def trees(request) -> tuple:
    model = _random_model(request.param)
    compiled = compile_trees(model)
    assert isinstance(compiled, CompiledTrees)
    return model, compiled


CODES = st.one_of(st.just(np.nan), st.integers(-3, 70).map(float), st.sampled_from([2.5, 255.0, 256.0, 1e6]))


@given(rows=st.lists(st.tuples(CODES, CODES, st.one_of(st.just(np.nan), st.floats(-4, 4))),
                     min_size=1, max_size=MAX_ROWS + 8))
@PROPERTY
def test_treelite_walks_the_trees_to_scikit_learns_answers_bit_for_bit(trees, rows):
    model, compiled = trees
    X = np.array(rows, dtype=np.float64)
    if hasattr(model, "predict_proba"):
        np.testing.assert_array_equal(compiled.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(compiled.predict(X), model.predict(X))


def test_treelite_is_given_scikit_learns_own_codes_of_the_categories(trees):
    """The trees split on scikit-learn's internal codes of the categorical features (its encoder
    over them, placed first); the compiled input equals that encoding, odd values included."""
    model, compiled = trees
    assert compiled.categorical == [0, 1] and compiled.matches_its_preprocessor()
    X = np.array([[19.0, 59.0, 0.3], [5.0, 3.0, np.nan], [np.nan, -1.0, 1.0], [2.5, 256.0, -0.2]])
    np.testing.assert_array_equal(compiled._input(X), model._preprocessor.transform(X))
    assert np.isnan(compiled._input(X)[1, 0])  # 5 was never seen in training: missing to the trees


def test_what_does_not_compile_is_served_by_the_pipeline_errors_included():
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    X = pd.DataFrame({"c": ["a", "b", "a", "c"] * 10, "x": np.arange(40.0)})
    y = np.arange(40) % 2

    def pipeline(encoder) -> Pipeline:
        columns = ColumnTransformer([("c", encoder, ["c"]), ("x", "passthrough", ["x"])])
        return Pipeline([("features", columns), ("model", LogisticRegression())]).fit(X, y)

    assert compile_model(pipeline(OneHotEncoder()), X) is None  # sparse output: not compiled
    assert compile_model(LogisticRegression().fit(X[["x"]], y), X[["x"]]) is None  # not a pipeline
    strict = pipeline(OrdinalEncoder())  # handle_unknown="error": an unseen category raises
    assert compile_model(strict, None) is None  # nothing to check it on: not compiled
    assert compile_model(strict, X.drop(columns=["x"])) is None  # checking it raised: never raises
    compiled = compile_model(strict, X)
    assert compiled is not None
    np.testing.assert_array_equal(compiled.predict_proba(X), strict.predict_proba(X))
    unseen = pd.DataFrame({"c": ["z"], "x": [1.0]})
    with pytest.raises(ValueError) as ours:
        compiled.predict_proba(unseen)
    with pytest.raises(ValueError) as theirs:
        strict.predict_proba(unseen)
    assert str(ours.value) == str(theirs.value) and "unknown categories" in str(ours.value)
