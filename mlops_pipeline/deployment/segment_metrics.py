"""Metrics of many bootstrap resamples at once, for `deployment.segments`.

A resample is a row of a count matrix `W` (resamples x rows: how often each row was drawn), so a
metric over every resample is a few matrix products instead of a loop: means of per-row losses
(accuracy, log_loss, brier, mae) are `W @ loss / W.sum(1)`, F1 and R2 are built from such sums,
and ROC AUC is rank based — the rows are sorted by score once, and each resample's AUC is the
weighted count of (positive, negative) pairs in the right order, ties counting half, exactly
sklearn's `roc_auc_score` on the resampled rows (one-vs-rest macro for multi-class). The
semantics are `training.model.compute_metrics`'; `Scored` holds the canonical arrays it works on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: The metrics a segment can be judged on (the gate's first metric must be one of them).
SEGMENT_METRICS = frozenset({"roc_auc", "accuracy", "f1", "macro_f1", "log_loss", "brier",
                             "mae", "rmse", "r2"})


@dataclass(frozen=True)
class Scored:
    """One model's answers on the compared rows, in canonical form: `y` 0/1 (binary), class codes
    (multi-class, -1 for a class the model does not know) or values (regression); `scores` the
    positive class's probability, the (n, k) matrix, or the predicted value; `cut` the binary
    decision threshold."""

    task: str
    y: np.ndarray
    scores: np.ndarray
    cut: float = 0.5

    @property
    def kind(self) -> str:
        if self.task != "classification":
            return "regression"
        return "binary" if self.scores.ndim == 1 else "multiclass"

    def take(self, rows: np.ndarray) -> Scored:
        return Scored(self.task, self.y[rows], self.scores[rows], self.cut)


def scored(task: str, y_true: Any, scores: Any, classes: Any = None) -> Scored:
    """`Scored` from what `compute_metrics` takes: the true labels, `predict_scores`' output and
    the model's `ClassInfo` (default: a derived 0/1 target with positive 1)."""
    from mlops_pipeline.training.model import ClassInfo, _align, _codes

    y = np.asarray(y_true)
    scores = np.asarray(scores, dtype="float64")
    if task != "classification":
        return Scored(task, y.astype("float64"), scores)
    if classes is None:
        classes = ClassInfo((0, 1), 1)
        y = y.astype(int)
    codes = _codes(_align(y, classes.labels), classes.labels)
    if scores.ndim == 1:
        pidx = 1 if classes.positive is None else classes.positive
        cut = 0.5 if classes.threshold is None else float(classes.threshold)
        return Scored(task, (codes == pidx).astype("int8"), scores, cut)
    return Scored(task, codes, scores)


def applies(metric: str, kind: str) -> bool:
    """Whether `metric` is defined for a target of this kind (binary, multiclass, regression)."""
    if kind == "regression":
        return metric in {"mae", "rmse", "r2"}
    if kind == "multiclass":
        return metric in {"roc_auc", "accuracy", "macro_f1", "log_loss"}
    return metric in SEGMENT_METRICS - {"mae", "rmse", "r2"}


def metric_values(metric: str, s: Scored, W: np.ndarray) -> np.ndarray:
    """`metric` of `s` under each row of weights `W` (resamples x rows); NaN where undefined (a
    resample without both classes for AUC)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _values(metric, s, np.asarray(W, dtype="float64"))


def _mean(W: np.ndarray, per_row: np.ndarray) -> np.ndarray:
    return (W @ per_row) / W.sum(axis=1)


def _values(metric: str, s: Scored, W: np.ndarray) -> np.ndarray:
    kind = s.kind
    if kind == "regression":
        err = s.scores - s.y
        if metric == "mae":
            return _mean(W, np.abs(err))
        if metric == "rmse":
            return np.sqrt(_mean(W, err * err))
        total = W.sum(axis=1)
        sst = W @ (s.y * s.y) - (W @ s.y) ** 2 / total
        return 1.0 - (W @ (err * err)) / sst
    if kind == "binary":
        y = s.y.astype("float64")
        if metric == "roc_auc":
            return _auc(W, s.scores, y)
        hard = (s.scores >= s.cut).astype("float64")
        if metric == "accuracy":
            return _mean(W, (hard == y).astype("float64"))
        if metric == "brier":
            return _mean(W, (s.scores - y) ** 2)
        if metric == "log_loss":
            p = np.clip(s.scores, 1e-7, 1 - 1e-7)
            return _mean(W, -(y * np.log(p) + (1 - y) * np.log(1 - p)))
        if metric == "f1":
            return _f1(W, hard, y)
        if metric == "macro_f1":
            return (_f1(W, hard, y) + _f1(W, 1 - hard, 1 - y)) / 2
    else:
        k = s.scores.shape[1]
        hard = s.scores.argmax(axis=1)
        if metric == "accuracy":
            return _mean(W, (hard == s.y).astype("float64"))
        if metric == "log_loss":
            p = np.clip(s.scores, 1e-7, 1.0)
            p = p / p.sum(axis=1, keepdims=True)
            known = s.y >= 0
            loss = np.zeros(len(s.y))
            loss[known] = -np.log(p[known, s.y[known]])
            return (W[:, known] @ loss[known]) / W[:, known].sum(axis=1)
        if metric == "macro_f1":
            return np.mean([_f1(W, (hard == c).astype("float64"), (s.y == c).astype("float64"))
                            for c in range(k)], axis=0)
        if metric == "roc_auc":
            known = s.y >= 0
            Wk = W[:, known]
            return np.mean([_auc(Wk, s.scores[known, c], (s.y[known] == c).astype("float64"))
                            for c in range(k)], axis=0)
    raise ValueError(f"segment metric {metric!r} is not defined for a {kind} target; use one of "
                     f"{sorted(m for m in SEGMENT_METRICS if applies(m, kind))}")


def _f1(W: np.ndarray, hard: np.ndarray, y: np.ndarray) -> np.ndarray:
    tp = W @ (hard * y)
    fp = W @ (hard * (1 - y))
    fn = W @ ((1 - hard) * y)
    out = 2 * tp / (2 * tp + fp + fn)
    return np.where(2 * tp + fp + fn > 0, out, 0.0)  # sklearn's zero_division=0


def _auc(W: np.ndarray, scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weighted ROC AUC per row of `W`: the share of (positive, negative) weight pairs ordered
    right, ties counting half (the Mann-Whitney statistic sklearn's AUC equals)."""
    order = np.argsort(scores, kind="stable")
    ranked = scores[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # one level per distinct score
    Ws = W[:, order]
    pos = np.add.reduceat(Ws * y[order], starts, axis=1)
    neg = np.add.reduceat(Ws * (1 - y[order]), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    return (pos * (below + 0.5 * neg)).sum(axis=1) / pairs
