"""The model pipeline carries its own feature transforms; serving sends raw contract columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.data.preparation import SPLIT_COLUMN, prepare, xy
from mlops_pipeline.spec import load_spec
from mlops_pipeline.training.model import DatetimeParts, build_pipeline, compute_metrics, predict_scores


@pytest.fixture(scope="module")
def prepared(flights):
    spec = load_spec("data/configs/flights.yaml")
    sample = flights[flights["month"] <= 2].sample(8000, random_state=0)
    return spec, prepare(sample, spec)


def test_cancelled_flights_are_dropped_and_the_split_is_by_time(prepared):
    spec, p = prepared
    assert p.dropped_unlabelled > 0
    df = p.frame
    assert df[spec.target.name].isin([0, 1]).all()
    train_end = df.loc[df[SPLIT_COLUMN] == "train", "time_hour"].max()
    holdout_start = df.loc[df[SPLIT_COLUMN] == "holdout", "time_hour"].min()
    assert train_end < holdout_start == pd.Timestamp(p.cutoff)
    assert 0.18 < (df[SPLIT_COLUMN] == "holdout").mean() < 0.22


def test_training_is_seeded_and_deterministic(prepared):
    spec, p = prepared
    X, y = xy(p.frame, spec, "train")
    Xh, _ = xy(p.frame, spec, "holdout")
    a = predict_scores(build_pipeline(spec).fit(X, y), Xh, spec.task)
    b = predict_scores(build_pipeline(spec).fit(X, y), Xh, spec.task)
    np.testing.assert_array_equal(a, b)


def test_unseen_categories_and_missing_weather_still_score(prepared):
    spec, p = prepared
    X, y = xy(p.frame, spec, "train")
    model = build_pipeline(spec).fit(X, y)
    odd = X.head(2).copy()
    odd["carrier"] = ["ZZ", None]
    odd["dest"] = "XXX"
    odd["temp"] = np.nan
    scores = predict_scores(model, odd, spec.task)
    assert scores.shape == (2,) and ((scores > 0) & (scores < 1)).all()


def test_weekday_is_derived_inside_the_pipeline():
    parts = DatetimeParts(parts=["dayofweek", "hour"]).fit(pd.DataFrame({"t": []}))
    out = parts.transform(pd.DataFrame({"t": ["2013-01-07 05:00", "2013-01-12 23:00"]}))
    np.testing.assert_array_equal(out, [[0, 5], [5, 23]])  # a Monday and a Saturday
    times = pd.Series(pd.date_range("2013-01-01", periods=500, freq="37min"))  # already timestamps
    for column in (times, times.dt.tz_localize("UTC"), times.astype(str)):
        np.testing.assert_array_equal(parts.transform(pd.DataFrame({"t": column})),
                                      np.column_stack([times.dt.dayofweek, times.dt.hour]))
    assert list(parts.get_feature_names_out()) == ["t_dayofweek", "t_hour"]


def test_metrics_for_both_tasks():
    y = np.array([0, 1, 1, 0])
    cls = compute_metrics("classification", y, np.array([0.1, 0.9, 0.8, 0.3]))
    assert cls["roc_auc"] == 1.0 and cls["f1"] == 1.0 and cls["brier"] < 0.05
    reg = compute_metrics("regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert reg["mae"] == pytest.approx(2 / 3) and reg["rmse"] == pytest.approx(np.sqrt(4 / 3))


def test_feedback_labels_become_targets_the_way_training_derives_them():
    from mlops_pipeline.data.preparation import target_from_feedback

    cls = load_spec("data/configs/flights.yaml")
    reg = load_spec("data/configs/flights_regression.yaml")
    assert cls.label_source == reg.label_source == "arr_delay"
    np.testing.assert_array_equal(target_from_feedback([3.0, 15.0, 16.0, 120.0], cls), [0, 0, 1, 1])
    np.testing.assert_array_equal(target_from_feedback([3.0, 16.0], reg), [3.0, 16.0])


def test_pip_requirements_pin_the_installed_model_packages():
    from importlib import metadata

    from mlops_pipeline.training.model import pip_requirements

    pins = dict(line.split("==") for line in pip_requirements())
    assert pins == {
        name: metadata.version(name) for name in ("scikit-learn", "skops", "numpy", "pandas", "scipy")
    }


@pytest.mark.parametrize("config", ["data/configs/flights.yaml", "data/configs/flights_regression.yaml"])
def test_skops_trusts_exactly_the_listed_types(flights, config):
    import skops.io

    from mlops_pipeline.training.model import SKOPS_TRUSTED_TYPES

    spec = load_spec(config)
    X, y = xy(prepare(flights.head(3000), spec).frame, spec, "train")
    model = build_pipeline(spec).set_params(model__max_iter=3).fit(X, y)
    data = skops.io.dumps(model)
    assert set(skops.io.get_untrusted_types(data=data)) <= set(SKOPS_TRUSTED_TYPES)
    loaded = skops.io.loads(data, trusted=list(SKOPS_TRUSTED_TYPES))
    np.testing.assert_array_equal(predict_scores(loaded, X, spec.task), predict_scores(model, X, spec.task))
    with pytest.raises(skops.io.exceptions.UntrustedTypesFoundException, match="TreePredictor"):
        skops.io.loads(data, trusted=[t for t in SKOPS_TRUSTED_TYPES if "TreePredictor" not in t])


@pytest.mark.parametrize("task", ["binary", "multi-class", "regression"])
def test_scores_in_slices_equal_the_whole_frames(task):
    """A holdout of millions of rows is scored a slice at a time (`chunk_rows`) with exactly the
    scores of one call, for every task (statsmodels' `fair`: nothing tuned for it)."""
    import statsmodels.api as sm

    spec = load_spec("data/configs/fair.yaml")
    frame = sm.datasets.fair.load_pandas().data
    X = frame[spec.features.columns]
    y = {"binary": frame["affairs"] > 0, "multi-class": frame["occupation"].astype(int).astype(str),
         "regression": frame["affairs"]}[task]
    if task == "regression":
        spec = spec.model_copy(update={"task": "regression"})
    model = build_pipeline(spec, seed=0).fit(X, y)
    whole = predict_scores(model, X, spec.task, chunk_rows=len(X))
    sliced = predict_scores(model, X, spec.task, chunk_rows=1000)
    assert whole.shape == ((len(X), 6) if task == "multi-class" else (len(X),))
    np.testing.assert_array_equal(sliced, whole)
