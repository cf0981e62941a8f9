"""Quality of logged answers once labels arrive: the scores a logged answer carries, the gate's
metrics on them, and calibration.

The prediction store keeps what the server answered, not what the model computed internally;
these functions turn those logged columns back into the arrays `training.model.compute_metrics`
takes, so production quality is the holdout's metrics computed the same way. Used by the
`model_quality` and `estimate_vs_realized` assets and by the monitoring board.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Daily quality keeps these metrics (those a person compares day to day).
DAILY_METRICS = ("roc_auc", "brier", "accuracy", "mae")
#: Fewest labelled rows of one version for its own metrics in `by_version`.
MIN_ROWS_PER_VERSION = 30


def score_column(task: str) -> str:
    """The logged column that carries an answer's score: `probability` for a classifier (the
    positive class's for binary, the predicted class's for multi-class), `prediction` (the value)
    for regression. The one place that maps a task to its score column."""
    return "probability" if task == "classification" else "prediction"


def quality_scores(rows: pd.DataFrame) -> tuple[np.ndarray, Any]:
    """Scores for `model.compute_metrics` from logged classifier answers, and their classes: the
    positive-class probability for binary answers, the (n, k) matrix for multi-class ones (over
    the union of the versions' classes). Answers logged without their classes give the
    probability column and None (the 0/1 default)."""
    from mlops_pipeline.training.model import ClassInfo

    dicts = rows["probabilities"].tolist() if "probabilities" in rows.columns else []
    if not dicts or any(d is None for d in dicts):  # answers logged without their classes
        return rows["probability"].to_numpy(dtype=float), None
    labels = tuple(dict.fromkeys(c for d in dicts for c in d))
    if len(labels) == 2:  # {negative: 1-p, positive: p}, as the store builds it
        positive = labels.index(list(dicts[0])[-1])
        return rows["probability"].to_numpy(dtype=float), ClassInfo(labels, positive)
    matrix = np.array([[d.get(c, 0.0) for c in labels] for d in dicts], dtype=float)
    return matrix, ClassInfo(labels, None)


def logged_scores(rows: pd.DataFrame, task: str) -> tuple[np.ndarray, Any]:
    """The scores and classes of logged answers for `compute_metrics`, for any task: a
    classifier's through `quality_scores`, a regressor's predicted values with no classes."""
    if task == "classification":
        return quality_scores(rows)
    return rows[score_column(task)].to_numpy(dtype=float), None


#: A binary model's metrics that depend on its decision threshold.
DECISION_METRICS = ("f1", "macro_f1", "accuracy")


def served_decisions(rows: pd.DataFrame, classes: Any) -> np.ndarray:
    """1.0 where a binary answer was the positive class, else 0.0, read from the logged `prediction`
    itself: the decision the server made with its version's stored threshold
    (`model.ClassInfo.threshold`), whichever version answered. `classes` None means 0/1."""
    from mlops_pipeline.training.model import class_name

    positive = 1 if classes is None else classes.positive_label
    names = np.asarray([class_name(v) for v in rows["prediction"]], dtype=object)
    return (names == class_name(positive)).astype(float)


def logged_metrics(task: str, y: Any, rows: pd.DataFrame) -> dict[str, float]:
    """`compute_metrics` of logged answers: scores from `logged_scores`, and for binary answers
    the threshold-dependent metrics (`DECISION_METRICS`) of the served decisions, so realized
    quality is that of what the server answered, not of a 0.5 cut the version never used."""
    from mlops_pipeline.training.model import compute_metrics

    scores, classes = logged_scores(rows, task)
    if task == "classification" and np.ndim(scores) == 1 and np.isnan(scores).any():
        # Answers logged without a probability (a champion answering labels only): the metrics of
        # the served decisions; none of those that need probabilities (`unmeasured`).
        decided = compute_metrics(task, y, served_decisions(rows, classes), classes)
        return {k: decided[k] for k in DECISION_METRICS}
    metrics = compute_metrics(task, y, scores, classes)
    if task == "classification" and np.ndim(scores) == 1 and "prediction" in rows.columns:
        served = compute_metrics(task, y, served_decisions(rows, classes), classes)
        metrics.update({k: served[k] for k in DECISION_METRICS})
    return metrics


def served_scores(rows: pd.DataFrame, estimator: Any) -> np.ndarray:
    """The logged scores in a performance estimator's class order: the positive class's
    probability (binary) or the (n, k) matrix (multi-class, matched by class name, so a class
    logged as 3.0 meets the model's 3)."""
    if estimator.kind == "binary":
        return rows["probability"].to_numpy(dtype=float)
    from mlops_pipeline.training.model import class_name

    names = [class_name(c) for c in estimator.labels]
    return np.array([[{class_name(k): v for k, v in d.items()}.get(c, 0.0) for c in names]
                     for d in rows["probabilities"]], dtype=float)


def drift_predictions(rows: pd.DataFrame, reference: pd.Series, task: str) -> np.ndarray:
    """The logged predictions as the drift reference holds them (`model.drift_scores`): the
    positive-class probability (binary), the value (regression), the predicted class (multi-class,
    a category: the reference column is then not numeric)."""
    if task == "classification" and not pd.api.types.is_numeric_dtype(reference):
        from mlops_pipeline.training.model import class_name

        return np.asarray([class_name(v) for v in rows["prediction"]], dtype=object)
    return rows[score_column(task)].to_numpy(dtype=float)


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[list[dict], float]:
    """Reliability curve over quantile bins of `p` (mean predicted, observed rate, rows per bin)
    and the expected calibration error (the rows-weighted gap between the two)."""
    frame = pd.DataFrame({"y": y, "p": p})
    frame["bin"] = pd.qcut(frame["p"], q=min(bins, max(1, frame["p"].nunique())), duplicates="drop")
    grouped = frame.groupby("bin", observed=True).agg(mean_predicted=("p", "mean"),
                                                       observed_rate=("y", "mean"), rows=("y", "size"))
    ece = float((grouped["rows"] * (grouped["mean_predicted"] - grouped["observed_rate"]).abs()).sum()
                / len(frame))
    curve = [{k: float(v) for k, v in r.items()} for r in grouped.reset_index(drop=True).to_dict("records")]
    return curve, ece


def calibration(y: np.ndarray, scores: np.ndarray, classes: Any) -> tuple[list[dict], float]:
    """Binary: the reliability curve of the positive class's probability. Multi-class: top-label
    calibration (the predicted class's probability against how often it was right). `classes`
    None means labels 0/1 with positive 1."""
    from mlops_pipeline.training.model import ClassInfo

    classes = classes or ClassInfo((0, 1), 1)
    codes = pd.Index(list(classes.labels)).get_indexer(pd.Index(y))
    if scores.ndim == 1:
        return reliability((codes == classes.positive).astype(float), scores)
    top = scores.argmax(axis=1)
    return reliability((codes == top).astype(float), scores.max(axis=1))


@dataclass
class LabelledQuality:
    """The gate's metrics on labelled answers, per version, and (classifiers) calibration."""

    metrics: dict[str, float]
    #: version -> metrics, for versions with enough rows (and, for a classifier, two classes).
    by_version: dict[str, dict[str, float]]
    #: "positive class" or "top label (predicted class)"; empty for regression.
    calibration: str = ""
    expected_calibration_error: float | None = None
    reliability_curve: list[dict] = field(default_factory=list)


def labelled_quality(labelled: pd.DataFrame, spec: Any) -> LabelledQuality:
    """Metrics of labelled logged answers (label and answer joined by request id), computed as on
    the holdout: the target derived from the label as in training (`target_from_feedback`)."""
    from mlops_pipeline.data.preparation import target_from_feedback

    y = target_from_feedback(labelled["label"], spec)
    scores, classes = logged_scores(labelled, spec.task)
    metrics = logged_metrics(spec.task, y, labelled)
    by_version = {
        str(v): logged_metrics(spec.task, y[mask], labelled[mask])
        for v in labelled["model_version"].unique()
        if (mask := (labelled["model_version"] == v).to_numpy()).sum() >= MIN_ROWS_PER_VERSION
        and (spec.task != "classification" or len(np.unique(y[mask])) > 1)
    }
    out = LabelledQuality(metrics, by_version)
    if spec.task == "classification" and not np.isnan(scores).any():
        curve, ece = calibration(y, scores, classes)
        out.calibration = "positive class" if scores.ndim == 1 else "top label (predicted class)"
        out.expected_calibration_error, out.reliability_curve = ece, curve
    return out


def unmeasured(metrics: dict[str, float], spec: Any) -> str:
    """One line naming the gate's floored metrics that labelled answers could not measure (a
    classifier's logged without class probabilities), or "" when every one was measured."""
    missing = [m for m, rule in spec.gate.items() if rule.floor is not None and m not in metrics]
    if not missing:
        return ""
    return (f"{', '.join(missing)} not measured: answers logged without class probabilities "
            "(the champion answers labels only)")


def daily_quality(log: pd.DataFrame, spec: Any) -> pd.DataFrame:
    """One row per day of labelled served answers with the `DAILY_METRICS` the task has (a
    classifier's day with a single class is left out: its metrics are undefined)."""
    from mlops_pipeline.data.preparation import target_from_feedback
    from mlops_pipeline.monitoring.predictions import served_rows

    served = served_rows(log)
    served = served[served["label"].notna()] if len(served) else served
    if served.empty:
        return pd.DataFrame()
    out = []
    for day, rows in served.groupby(pd.to_datetime(served["ts"], utc=True).dt.date):
        y = target_from_feedback(rows["label"], spec)
        if spec.task == "classification" and len(set(y)) < 2:
            continue
        metrics = logged_metrics(spec.task, y, rows)
        out.append({"day": day, **{k: metrics[k] for k in DAILY_METRICS if k in metrics}})
    return pd.DataFrame(out)
