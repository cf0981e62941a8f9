"""Performance estimation before labels (CBPE, DLE) against reference computations and against
the realized metrics of flights days replayed through the champion.

NannyML is not a dependency (it pins pandas and numpy below the locked versions), so the estimates
are checked against the definitions they implement: the calibrator against scikit-learn's isotonic
regression, and the estimates against realized metrics on data whose labels are drawn from the
calibrated probabilities themselves (the expected ROC AUC by its definition: test_cbpe.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.data.contract import load_contract, validate
from mlops_pipeline.data.preparation import prepare
from mlops_pipeline.monitoring import estimation as E
from mlops_pipeline.monitoring.degradation import degradation, threshold
from mlops_pipeline.monitoring.estimation_fit import fit_classification_estimator, fit_regression_estimator
from mlops_pipeline.spec import load_spec
from mlops_pipeline.training.fit import fit_and_score, performance_estimator
from mlops_pipeline.training.model import ClassInfo, compute_metrics, predict_scores

WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
#: The share of a day's flights each replayed day serves: the volume the loop tests land (~110 a day).
DAY_SAMPLE = 0.12


def test_the_calibrator_is_scikit_learns_isotonic_regression():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(1)
    s = rng.random(2000)
    y = (rng.random(2000) < s ** 2).astype(int)
    est = fit_classification_estimator(s, y, ClassInfo((0, 1), 1))
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s, y)
    new = np.r_[rng.random(500), -0.5, 1.5]
    np.testing.assert_allclose(est.calibrate(new), iso.predict(new), atol=1e-12)
    assert est.holdout_ece["after"] < est.holdout_ece["before"]


def _days_with_labels_from_the_truth(est, truth, make_scores, days=120, rows=400, seed=7):
    """Per synthetic day: the estimates and the realized metrics of labels drawn from `truth`."""
    rng = np.random.default_rng(seed)
    out = []
    for d in range(days):
        s = make_scores(rng, rows)
        q = truth(s)
        if q.ndim == 1:
            y = (rng.random(rows) < q).astype(int)
            classes = ClassInfo((0, 1), 1)
        else:
            y = (rng.random((rows, 1)) > np.cumsum(q, axis=1)).sum(axis=1)
            classes = ClassInfo(tuple(range(q.shape[1])), None)
        out.append((E.estimate_classification(est, s, seed=d), compute_metrics("classification", y, s,
                                                                               classes)))
    return out


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_estimates_match_realized_metrics_when_labels_follow_the_calibrated_probabilities(kind):
    """The model's scores are miscalibrated (true probability s**2, or a sharpened softmax);
    the holdout's calibrator learns it, and on fresh days whose labels follow it every estimate is
    unbiased (mean error under 0.012) and its band holds the realized metric on ~95% of days
    (asserted: at least 88% of 120 days)."""
    rng = np.random.default_rng(3)
    if kind == "binary":
        def make_scores(r, n):
            return r.random(n)

        def truth(s):
            return s ** 2

        classes = ClassInfo((0, 1), 1)
    else:
        def make_scores(r, n):
            return r.dirichlet([1.0, 1.0, 1.0], n)

        def truth(s):
            sharp = s ** 2
            return sharp / sharp.sum(axis=1, keepdims=True)

        classes = ClassInfo((0, 1, 2), None)
    s_hold = make_scores(rng, 20000)
    q = truth(s_hold)
    y_hold = ((rng.random(20000) < q).astype(int) if q.ndim == 1
              else (rng.random((20000, 1)) > np.cumsum(q, axis=1)).sum(axis=1))
    est = fit_classification_estimator(s_hold, y_hold, classes)
    # Binary: labels from the truth, which the isotonic calibrator recovers. Multi-class: labels
    # from the calibrated probabilities themselves (one-vs-rest calibrators only approximate a
    # truth that depends on every class's score at once).
    days = _days_with_labels_from_the_truth(est, truth if kind == "binary" else est.calibrate,
                                            make_scores)
    for metric in est.metrics():
        inside = np.mean([e[metric].contains(r[metric]) for e, r in days])
        errors = np.array([r[metric] - e[metric].value for e, r in days])
        assert inside >= 0.88, (kind, metric, inside)
        assert abs(errors.mean()) < 0.012, (kind, metric, errors.mean())


@pytest.fixture(scope="module")
def flights_champion(flights):
    """A champion trained the way the loop tests land data (months 1-3, 12%), its estimator fitted
    on its holdout with the day correction."""
    spec = load_spec("data/configs/flights.yaml")
    frame = prepare(flights[flights["month"] <= 3].sample(frac=DAY_SAMPLE, random_state=1), spec).frame
    fitted = fit_and_score(frame, spec, spec.model.seed)
    return spec, fitted, performance_estimator(fitted, spec, spec.model.seed)


def _replay_days(flights, spec, model, months, mutate=None):
    features = load_contract(spec).for_columns(spec.features.columns)
    for month in months:
        rows = prepare(flights[flights["month"] == month].sample(frac=DAY_SAMPLE, random_state=month),
                       spec).frame
        for day, idx in rows.groupby("day").indices.items():
            X = validate(rows.iloc[idx][spec.features.columns], features)
            if mutate is not None:
                X = mutate(X.copy())
            yield (month, day), X, rows.iloc[idx][spec.target.name].to_numpy()


def test_flights_days_replayed_the_estimated_auc_is_within_its_band_of_the_realized(flights,
                                                                                  flights_champion):
    """Done-when of issue 17: April to June, day by day, through the champion trained on January
    to March; the figure is in docs/benchmarks.md."""
    spec, fitted, est = flights_champion
    rows = []
    for key, X, y in _replay_days(flights, spec, fitted.model, (4, 5, 6)):
        scores = predict_scores(fitted.model, X, spec.task)
        estimate = E.estimate_classification(est, scores, ["roc_auc"])["roc_auc"]
        realized = compute_metrics(spec.task, y, scores, fitted.classes)["roc_auc"]
        rows.append((*key, len(y), estimate.value, estimate.contains(realized), realized))
    days = pd.DataFrame(rows, columns=["month", "day", "rows", "estimated", "inside", "realized"])
    mae = float((days["estimated"] - days["realized"]).abs().mean())
    inside = float(days["inside"].mean())
    print(f"\nflights Apr-Jun, {len(days)} days of ~{days['rows'].mean():.0f} flights: estimated ROC AUC "
          f"within its band on {inside:.0%} of days; MAE of the estimate {mae:.3f}; "
          f"mean estimated {days['estimated'].mean():.3f} vs realized {days['realized'].mean():.3f}")
    assert len(days) >= 90
    assert inside >= 0.75
    assert mae < 0.085


def _stuck_feed(X: pd.DataFrame) -> pd.DataFrame:
    """An upstream failure: the weather feed frozen at one reading, the hour defaulting to noon."""
    for column in WEATHER:
        X[column] = X[column].median()
    X["hour"] = 12
    return X


def test_a_stuck_feed_makes_the_estimate_fall_below_the_gate_line_before_any_label(flights,
                                                                                flights_champion):
    spec, fitted, est = flights_champion
    month = prepare(flights[flights["month"] == 4].sample(600, random_state=0), spec).frame
    X = validate(month[spec.features.columns], load_contract(spec).for_columns(spec.features.columns))
    healthy = E.estimate_classification(est, predict_scores(fitted.model, X, spec.task))
    broken = E.estimate_classification(est, predict_scores(fitted.model, _stuck_feed(X.copy()), spec.task))
    assert degradation(healthy, spec.gate, fitted.metrics) == []
    reasons = degradation(broken, spec.gate, fitted.metrics)
    assert reasons and reasons[0].startswith("estimated roc_auc")
    assert broken["roc_auc"].upper < threshold("roc_auc", spec.gate["roc_auc"], fitted.metrics)


def test_regression_dle_estimates_the_days_mae_on_flights(flights):
    spec = load_spec("data/configs/flights_regression.yaml")
    frame = prepare(flights[flights["month"] <= 3].sample(frac=0.3, random_state=1), spec).frame
    fitted = fit_and_score(frame, spec, spec.model.seed)
    est = performance_estimator(fitted, spec, spec.model.seed)
    assert set(est.metrics(spec.gate)) == {"r2", "mae"}
    rows = []
    for _, X, y in _replay_days(flights, spec, fitted.model, (4,)):
        pred = predict_scores(fitted.model, X, spec.task)
        estimate = E.estimate_regression(est, fitted.model, X, pred, ["mae"])["mae"]
        realized = compute_metrics(spec.task, y, pred)["mae"]
        rows.append((estimate.value, estimate.contains(realized), realized))
    days = pd.DataFrame(rows, columns=["estimated", "inside", "realized"])
    mae = float((days["estimated"] - days["realized"]).abs().mean())
    print(f"\nflights_regression April, {len(days)} days: estimated MAE within its band on "
          f"{days['inside'].mean():.0%} of days; error of the estimate {mae:.2f} minutes "
          f"(realized MAE {days['realized'].mean():.1f})")
    assert days["inside"].mean() >= 0.5
    assert mae < 0.35 * days["realized"].mean()


def test_an_estimator_survives_its_storage_format(flights_champion):
    _, fitted, est = flights_champion
    loaded = E.PerformanceEstimator.from_bytes(est.to_bytes())
    assert loaded.labels == est.labels and loaded.positive == est.positive
    assert loaded.bias == est.bias
    a = E.estimate_classification(est, fitted.scores[:500])
    b = E.estimate_classification(loaded, fitted.scores[:500])
    assert a == b


def test_regression_estimator_survives_its_storage_format():
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import Pipeline

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600)})
    y = X["a"] * 2 + rng.normal(scale=np.abs(X["b"]) + 0.1)
    model = Pipeline([("features", ColumnTransformer([("n", "passthrough", ["a", "b"])])),
                      ("model", HistGradientBoostingRegressor(max_iter=30))]).fit(X, y)
    pred = model.predict(X)
    est = fit_regression_estimator(model, X, y, pred)
    loaded = E.PerformanceEstimator.from_bytes(est.to_bytes())
    assert E.estimate_regression(est, model, X, pred) == E.estimate_regression(loaded, model, X, pred)
    # The rows whose noise is largest get the largest predicted loss: the loss model learned it.
    noisy = np.abs(X["b"]).to_numpy() > 1.5
    assert (E.estimate_regression(est, model, X[noisy], pred[noisy])["mae"].value
            > E.estimate_regression(est, model, X[~noisy], pred[~noisy])["mae"].value)


def test_logged_multi_class_answers_are_scored_in_the_estimators_class_order():
    from mlops_pipeline.monitoring.quality import served_scores

    est = E.PerformanceEstimator("multiclass", labels=(1, 2, 3))
    rows = pd.DataFrame({"probabilities": [{"3": 0.2, "1": 0.5, "2": 0.3}, {3.0: 0.6, 1.0: 0.1, 2.0: 0.3}]})
    np.testing.assert_allclose(served_scores(rows, est), [[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]])
    binary = E.PerformanceEstimator("binary", labels=("no", "yes"), positive=1)
    np.testing.assert_allclose(served_scores(pd.DataFrame({"probability": [0.2, 0.9]}), binary), [0.2, 0.9])


def test_a_string_multi_class_estimator_survives_its_storage_format():
    rng = np.random.default_rng(2)
    scores = rng.dirichlet([1.0, 1.0, 1.0], 3000)
    y = np.array(["low", "mid", "high"])[(rng.random((3000, 1)) > np.cumsum(scores, axis=1)).sum(axis=1)]
    est = fit_classification_estimator(scores, y, ClassInfo(("low", "mid", "high"), None))
    loaded = E.PerformanceEstimator.from_bytes(est.to_bytes())
    assert loaded.labels == ("low", "mid", "high") and loaded.kind == "multiclass"
    np.testing.assert_allclose(loaded.calibrate(scores[:50]), est.calibrate(scores[:50]))
    assert E.estimate_classification(loaded, scores[:400]) == E.estimate_classification(est, scores[:400])


def test_group_rows_are_each_days_rows_in_order():
    """The day correction's grouping (one sort) gives each day's row positions as a scan per day
    would, days in sorted order: a holdout of years has thousands of days."""
    from mlops_pipeline.monitoring.estimation_fit import group_rows

    days = np.random.default_rng(0).choice([f"2013-01-{d:02d}" for d in range(1, 29)], 5000)
    expected = [np.nonzero(days == d)[0] for d in np.unique(days)]
    got = group_rows(days)
    assert len(got) == len(expected) == 28
    assert all((a == b).all() for a, b in zip(got, expected, strict=True))
