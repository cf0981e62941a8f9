"""Fitting a version's `PerformanceEstimator` on its holdout, at training time. No Dagster.

Classification: isotonic calibrators of the served probabilities (and the holdout's expected
calibration error before and after). Regression: the DLE loss models, their out-of-fold residual
spread behind the band. With a time column, the day correction (`correct_by_groups`): a day's
labels are not independent given the probabilities (weather delays a whole day's flights), so
per-day realized metrics sit off the estimate by a consistent amount; that bias, measured on the
holdout's days, is added to every later estimate. scikit-learn is imported where used.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mlops_pipeline.monitoring.estimation import (
    Z95,
    PerformanceEstimator,
    estimate_classification,
    estimate_regression,
    loss_features,
)


def _isotonic(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, y)
    return np.asarray(iso.X_thresholds_, dtype="float64"), np.asarray(iso.y_thresholds_, dtype="float64")


def fit_classification_estimator(scores: np.ndarray, y_hold: Any, classes: Any) -> PerformanceEstimator:
    """Calibrators of the served probabilities, fitted on the holdout's labels.

    `scores` as `model.predict_scores` gives them (positive-class probability, or the (n, k)
    matrix in `classes.labels` order); `classes` a `model.ClassInfo`."""
    from mlops_pipeline.training.model import _align, _codes

    scores = np.asarray(scores, dtype="float64")
    codes = _codes(_align(np.asarray(y_hold), classes.labels), classes.labels)
    if scores.ndim == 1:
        positive = (codes == classes.positive).astype(float)
        est = PerformanceEstimator("binary", classes.labels, classes.positive,
                                   [_isotonic(scores, positive)], holdout_rows=len(codes),
                                   threshold=0.5 if classes.threshold is None else classes.threshold)
        after = est.calibrate(scores)
        est.holdout_ece = {"before": _ece(positive, scores), "after": _ece(positive, after)}
        return est
    knots = [_isotonic(scores[:, c], (codes == c).astype(float)) for c in range(scores.shape[1])]
    est = PerformanceEstimator("multiclass", classes.labels, None, knots, holdout_rows=len(codes))
    after = est.calibrate(scores)
    top, top_after = scores.argmax(axis=1), after.argmax(axis=1)
    est.holdout_ece = {"before": _ece((codes == top).astype(float), scores.max(axis=1)),
                       "after": _ece((codes == top_after).astype(float), after.max(axis=1))}
    return est


def _categorical(model: Any) -> Any:
    pipeline = model.get_raw_model() if hasattr(model, "get_raw_model") else model
    if not hasattr(pipeline, "steps"):  # not a pipeline: `loss_features` gave numbers only
        return None
    return pipeline[-1].get_params().get("categorical_features")


def fit_regression_estimator(model: Any, X_hold: Any, y_hold: Any, predictions: np.ndarray,
                             seed: int = 0) -> PerformanceEstimator:
    """DLE: models of the champion's absolute and squared error on the holdout. The residual
    spread behind the band is measured out of fold (2 folds), the final models fit on it all."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import KFold, cross_val_predict

    y = np.asarray(y_hold, dtype="float64")
    pred = np.asarray(predictions, dtype="float64")
    X = loss_features(model, X_hold, pred)
    categorical = _categorical(model)
    targets = {"abs": np.abs(y - pred), "sq": (y - pred) ** 2}
    models, sd = {}, {}
    for name, target in targets.items():
        make = lambda: HistGradientBoostingRegressor(  # noqa: E731
            max_iter=60, learning_rate=0.08, max_leaf_nodes=15, min_samples_leaf=40,
            categorical_features=categorical, random_state=seed)
        oof = cross_val_predict(make(), X, target, cv=KFold(2, shuffle=True, random_state=seed))
        sd[name] = float(np.std(target - np.clip(oof, 0, None)))
        models[name] = make().fit(X, target)
    return PerformanceEstimator("regression", loss_models=models, residual_sd=sd,
                                target_var=float(np.var(y)), holdout_rows=len(y))


def fit_estimator(model: Any, X_hold: Any, y_hold: Any, scores: np.ndarray, task: str,
                  classes: Any = None, seed: int = 0, groups: Any = None) -> PerformanceEstimator:
    """The version's estimator from its holdout (the training step's `Fitted` holds every input).
    `groups` (the holdout rows' day, when the data has a time column) adds the day correction."""
    if task == "classification":
        est = fit_classification_estimator(scores, y_hold, classes)
    else:
        est = fit_regression_estimator(model, X_hold, y_hold, scores, seed)
    if groups is not None:
        correct_by_groups(est, model, X_hold, y_hold, scores, classes, groups, seed)
    return est


#: A holdout day takes part in the day correction from this many rows; the correction needs
#: this many such days.
GROUP_MIN_ROWS = 30
GROUP_MIN_COUNT = 5


def group_rows(groups: Any) -> list[np.ndarray]:
    """Row positions of each group, groups in sorted order, positions ascending: what
    `np.nonzero(groups == g)` gives for each `g` of `np.unique(groups)`, in one sort instead of a
    pass over all rows per group (a holdout of years has thousands of days)."""
    codes, uniques = pd.factorize(np.asarray(groups), sort=True)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    return np.split(order[len(order) - counts.sum():], np.cumsum(counts)[:-1])


def correct_by_groups(est: PerformanceEstimator, model: Any, X_hold: Any, y_hold: Any,
                      scores: np.ndarray, classes: Any, groups: Any, seed: int = 0) -> None:
    """Measure the estimator on the holdout's days and keep its error there (in place).

    The estimate is made per day, and a day's labels are not independent given the calibrated
    probabilities (a storm delays every flight of that day): realized per-day metrics then sit
    consistently off the CBPE/DLE value (on flights, a day's AUC is below the pooled calibration's)
    and spread wider than the label-sampling band. Per metric: `bias`, the row-weighted mean of
    realized less estimated over the holdout's days, is added to every later estimate; `extra_sd`
    is the spread of that error the bands do not account for."""
    from mlops_pipeline.training.model import compute_metrics

    y = np.asarray(y_hold)
    task = "regression" if est.kind == "regression" else "classification"
    errors: dict[str, list[tuple[float, float, float]]] = {}
    for idx in group_rows(groups):
        if len(idx) < GROUP_MIN_ROWS:
            continue
        if task == "classification":
            if len(np.unique(y[idx])) < 2:
                continue
            estimates = estimate_classification(est, scores[idx], seed=seed, corrected=False)
        else:
            estimates = estimate_regression(est, model, X_hold.iloc[idx], scores[idx], corrected=False)
        realized = compute_metrics(task, y[idx], scores[idx], classes)
        for m, e in estimates.items():
            if m in realized and math.isfinite(realized[m]) and math.isfinite(e.value):
                half = (e.upper - e.lower) / (2 * Z95)
                errors.setdefault(m, []).append((realized[m] - e.value, half ** 2, len(idx)))
    for m, rows in errors.items():
        if len(rows) < GROUP_MIN_COUNT:
            continue
        err, band_var, w = (np.asarray(c, dtype="float64") for c in zip(*rows, strict=True))
        bias = float(np.average(err, weights=w))
        spread = float(np.average((err - bias) ** 2, weights=w))
        est.bias[m] = bias
        est.extra_sd[m] = math.sqrt(max(0.0, spread - float(np.average(band_var, weights=w))))


def _ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-count bins."""
    order = np.argsort(p, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, min(bins, len(order)) or 1):
        if len(chunk):
            total += len(chunk) * abs(float(p[chunk].mean()) - float(y[chunk].mean()))
    return total / max(len(p), 1)
