"""`model.threshold`: the decision threshold of a binary target, chosen on a validation split.

The validation rows are carved from the train split by content hash (`data.preparation.row_hash`,
salted apart from the holdout's own hash), never from the holdout, so the gate still judges the
threshold on rows it was not chosen on, and `reproduce` carves the same rows again.

The chosen threshold is saved on the fitted model (`model.THRESHOLD_ATTR`) and so travels with the
registered version: `model.class_info` reads it, and with it the gate's threshold-dependent metrics
(`compute_metrics`), serving's `prediction` and the estimates before labels apply it.
Probabilities are never changed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: The validation share when `model.threshold` does not set one (`model.train`'s validation frame).
DEFAULT_VALIDATION_FRACTION = 0.2


def validation_mask(X: pd.DataFrame, y: pd.Series, spec: Any, fraction: float | None = None) -> np.ndarray:
    """True for the train rows set aside as validation: `fraction` of them (default: the threshold's
    `validation_fraction`, else 0.2), by a seeded hash of each row's content (features and target),
    the same for the same rows. The one carving of validation rows: the threshold, `model.train`'s
    validation frame and `model.search`'s trials all use it (a smaller fraction, a subset)."""
    from mlops_pipeline.data.preparation import remix, row_hash, unit_interval

    if fraction is None:
        rule = spec.model.threshold
        fraction = rule.validation_fraction if rule is not None else DEFAULT_VALIDATION_FRACTION
    rows = X.reset_index(drop=True).assign(**{"__target__": np.asarray(y)})
    u = unit_interval(remix(row_hash(rows, list(rows.columns)), f"validation-{spec.model.seed}"))
    return u < fraction


def choose(positive: np.ndarray, scores: np.ndarray, rule: Any) -> float:
    """The threshold `rule` (a `spec_sections.ThresholdSpec`) picks for 0/1 labels `positive` and
    positive-class probabilities `scores`: a score itself (predict positive when score >= it).

    f1: the best F1; precision_at_recall R: the best precision among thresholds whose recall is at
    least R (the highest such threshold on ties); cost: the least fp * FP + fn * FN. ValueError when
    the validation split has no positive row."""
    y = np.asarray(positive, dtype="float64")
    s = np.asarray(scores, dtype="float64")
    if y.sum() == 0 or len(y) == 0:
        raise ValueError("model.threshold: the validation split has no positive row — lower "
                         "model.threshold.validation_fraction's bar or use more data")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]  # last row of each tied score
    candidates = s_sorted[last]  # descending: predicting positive at >= candidate[i]
    tp = np.cumsum(y_sorted)[last]
    fp = np.cumsum(1 - y_sorted)[last]
    fn = y.sum() - tp
    if rule.objective == "f1":
        value = 2 * tp / (2 * tp + fp + fn)
    elif rule.precision_at_recall is not None:
        recall = tp / y.sum()
        precision = tp / (tp + fp)
        value = np.where(recall >= rule.precision_at_recall - 1e-12, precision, -1.0)
    else:
        value = -(rule.cost.fp * fp + rule.cost.fn * fn)
    best = int(np.argmax(value))  # the first best, i.e. the highest threshold among ties
    return float(candidates[best])


def fit_with_threshold(build: Any, X: pd.DataFrame, y: pd.Series, spec: Any) -> tuple[Any, float]:
    """Fit `build()` on the train rows outside the validation split, choose the threshold on the
    validation rows and save it on the model; returns the model and the threshold."""
    from mlops_pipeline.training.model import set_positive_class

    mask = validation_mask(X, y, spec)
    fit_X, fit_y = X[~mask], y[~mask]
    model = build().fit(fit_X, fit_y)
    classes = set_positive_class(model, fit_y, spec)
    return model, set_threshold(model, classes, X[mask], y[mask], spec)


def set_threshold(model: Any, classes: Any, X_val: pd.DataFrame, y_val: pd.Series, spec: Any) -> float:
    """Choose `model.threshold` on the validation rows for a fitted binary `model` (its
    `ClassInfo` `classes`), save it on the model and return it."""
    from mlops_pipeline.training.model import THRESHOLD_ATTR, _raw, predict_scores

    if not classes.binary:
        raise ValueError("model.threshold: only for a binary target — remove it")
    scores = predict_scores(model, X_val, spec.task)
    labels = np.asarray(y_val)
    positive = np.array([v == classes.positive_label for v in labels.tolist()])
    threshold = choose(positive, scores, spec.model.threshold)
    setattr(_raw(model), THRESHOLD_ATTR, threshold)
    return threshold
