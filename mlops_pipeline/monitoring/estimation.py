"""Performance before the labels arrive: CBPE for classifiers, DLE for regressors. No Dagster.

Each model version carries a `PerformanceEstimator`, fitted at training time on its holdout (where
the labels are known) and stored with the version like the drift reference:

- classification, confidence-based performance estimation (CBPE, as NannyML names it): the
  holdout fits an isotonic calibrator of the served probability (binary: of the positive class's;
  multi-class: one per class, one-vs-rest, rows renormalised to sum to one: the per-class method
  NannyML uses, which keeps CBPE's per-class expected confusion matrix exact, where temperature
  scaling's single parameter cannot fix a model over-confident on one class and not another). On a
  day of traffic, calibrated probability `p_i` is the chance row i is positive, so the expected
  confusion matrix is `TP = sum p_i [yhat_i = 1]`, `FP = sum (1 - p_i) [yhat_i = 1]`, ... and the
  gate's metrics follow from it. ROC AUC is the expected-count ROC curve: rows ranked by the
  served score (the ranking the realized AUC uses; NannyML ranks by the calibrated score, whose
  isotonic steps would tie rows the model separates), TPR and FPR accumulated from `p_i` and
  `1 - p_i`; it equals `sum_ij p_i (1 - p_j) ([s_i > s_j] + [s_i = s_j] / 2) / (P N)`. The log loss
  and Brier score are their expectations under `p`.
- regression, direct loss estimation (DLE): two small HistGradientBoosting models on the holdout's
  features (as the champion's own transformer encodes them) plus its prediction, learning the
  champion's absolute and squared error; MAE is the mean predicted absolute error, RMSE the root
  of the mean predicted squared error, R2 uses the holdout's target variance.

Uncertainty bands (95 %), from the day's sample size:
- classification: a parametric bootstrap: `BOOTSTRAP` label draws `y_i ~ p_i` over the day's rows,
  each scored with the realized metric's own formula; the band is the 2.5-97.5 % quantiles: where
  the realized metric of these rows falls if the calibration holds.
- regression: the analytic standard error `sigma / sqrt(n)`, sigma being the out-of-fold spread of
  the loss model's residuals on the holdout (for RMSE and R2 through the delta method).
Day correction (`correct_by_groups`, when the data has a time column): a day's labels are not
independent given the probabilities (weather delays a whole day's flights), so per-day realized
metrics sit off the estimate by a consistent amount; that bias, measured on the holdout's days, is
added to every estimate. The bands cover label sampling only: neither the remaining day-to-day
spread (`extra_sd`, reported) nor a calibrator that stopped being right (concept drift) is in them,
which is what checking the estimate against the realized metric, once labels arrive, is for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BOOTSTRAP = 200
Z95 = 1.959964
#: Metrics this module estimates, per kind of target.
ESTIMABLE = {
    "binary": ("roc_auc", "accuracy", "f1", "macro_f1", "log_loss", "brier"),
    "multiclass": ("roc_auc", "accuracy", "macro_f1", "log_loss"),
    "regression": ("mae", "rmse", "r2"),
}
EPS = 1e-7


@dataclass(frozen=True)
class Estimate:
    """One estimated metric of one day's traffic: the value and its 95 % band."""

    metric: str
    value: float
    lower: float
    upper: float
    rows: int

    def contains(self, realized: float) -> bool:
        return self.lower <= realized <= self.upper


@dataclass
class PerformanceEstimator:
    """What a model version needs to estimate its own performance without labels.

    `kind` is binary, multiclass or regression. Classification keeps one isotonic calibrator per
    probability column it calibrates (`knots`: x and y of the increasing step function; binary:
    the positive class's only). Regression keeps the loss models and their residual spread."""

    kind: str
    labels: tuple = ()
    positive: int | None = None
    knots: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    loss_models: dict[str, Any] = field(default_factory=dict)
    residual_sd: dict[str, float] = field(default_factory=dict)
    target_var: float = float("nan")
    holdout_rows: int = 0
    holdout_ece: dict[str, float] = field(default_factory=dict)  # before / after calibration
    # Per metric, measured on the holdout's days (`correct_by_groups`): the mean of realized less
    # estimated, added to every estimate, and the spread of that error beyond the band's own
    # (reported, not added to the band: see `_corrected`).
    bias: dict[str, float] = field(default_factory=dict)
    extra_sd: dict[str, float] = field(default_factory=dict)

    # ---- calibration ------------------------------------------------------------------------
    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of the served scores (same shape)."""
        scores = np.asarray(scores, dtype="float64")
        if self.kind == "binary":
            x, y = self.knots[0]
            return np.interp(scores, x, y)
        out = np.column_stack([np.interp(scores[:, c], x, y) for c, (x, y) in enumerate(self.knots)])
        total = out.sum(axis=1, keepdims=True)
        return np.where(total > 0, out / np.where(total > 0, total, 1.0), scores)

    def metrics(self, gate: dict | list | None = None) -> list[str]:
        """The metrics it estimates: the gate's that it can, else all of its kind."""
        own = ESTIMABLE[self.kind]
        wanted = [m for m in (gate or []) if m in own]
        return wanted or list(own)

    # ---- storage ----------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """A skops file (no pickle): plain arrays and numbers plus the loss models."""
        import skops.io as sio

        state = {
            "kind": self.kind, "labels": [str(v) for v in self.labels],
            "label_types": [type(v).__name__ for v in self.labels],
            "positive": -1 if self.positive is None else int(self.positive),
            "knots_x": [x for x, _ in self.knots], "knots_y": [y for _, y in self.knots],
            "loss_models": dict(self.loss_models), "residual_sd": dict(self.residual_sd),
            "target_var": float(self.target_var), "holdout_rows": int(self.holdout_rows),
            "holdout_ece": dict(self.holdout_ece),
            "bias": dict(self.bias), "extra_sd": dict(self.extra_sd),
        }
        return sio.dumps(state)

    @classmethod
    def from_bytes(cls, data: bytes) -> PerformanceEstimator:
        import skops.io as sio

        from mlops_pipeline.training.model import SKOPS_TRUSTED_TYPES

        state = sio.loads(data, trusted=[*SKOPS_TRUSTED_TYPES, *LOSS_MODEL_TYPES])
        cast = {"int": int, "float": float, "bool": lambda s: s == "True", "str": str}
        labels = tuple(cast.get(t, str)(v) for v, t in zip(state["labels"], state["label_types"],
                                                             strict=True))
        return cls(
            kind=state["kind"], labels=labels,
            positive=None if state["positive"] < 0 else int(state["positive"]),
            knots=[(np.asarray(x), np.asarray(y)) for x, y in zip(state["knots_x"], state["knots_y"],
                                                                   strict=True)],
            loss_models=dict(state["loss_models"]), residual_sd=dict(state["residual_sd"]),
            target_var=float(state["target_var"]), holdout_rows=int(state["holdout_rows"]),
            holdout_ece=dict(state["holdout_ece"]),
            bias=dict(state.get("bias", {})), extra_sd=dict(state.get("extra_sd", {})),
        )


#: Types in a stored estimator that skops does not trust by default (the loss models' trees).
LOSS_MODEL_TYPES = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",)


# ---- fitting (training time, on the holdout) ------------------------------------------------
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
                                   [_isotonic(scores, positive)], holdout_rows=len(codes))
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


def loss_features(model: Any, X: Any, predictions: np.ndarray) -> np.ndarray:
    """The loss model's inputs: the champion's own encoding of the features plus its prediction."""
    pipeline = model.get_raw_model() if hasattr(model, "get_raw_model") else model
    encoded = np.asarray(pipeline[:-1].transform(X), dtype="float64")
    return np.column_stack([encoded, np.asarray(predictions, dtype="float64")])


def _categorical(model: Any) -> Any:
    pipeline = model.get_raw_model() if hasattr(model, "get_raw_model") else model
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

    groups = np.asarray(groups)
    y = np.asarray(y_hold)
    task = "regression" if est.kind == "regression" else "classification"
    errors: dict[str, list[tuple[float, float, float]]] = {}
    for g in np.unique(groups):
        idx = np.nonzero(groups == g)[0]
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


def _corrected(est: PerformanceEstimator, m: str, value: float, lower: float, upper: float,
               rows: int) -> Estimate:
    """An estimate and its band moved by the estimator's day bias. The band is not widened by
    `extra_sd` (reported beside it): on flights that spread is as large as a real degradation, and
    a band that covers it could never be clear of a threshold, so the sensor would never fire."""
    bias = est.bias.get(m, 0.0)
    return Estimate(m, value + bias, lower + bias, upper + bias, rows)


def _ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-count bins."""
    order = np.argsort(p, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, min(bins, len(order)) or 1):
        if len(chunk):
            total += len(chunk) * abs(float(p[chunk].mean()) - float(y[chunk].mean()))
    return total / max(len(p), 1)


# ---- CBPE -------------------------------------------------------------------------------------
def cbpe_roc_auc(p: np.ndarray, scores: np.ndarray) -> float:
    """Expected-count ROC AUC: rows ranked by the served score, TPR/FPR accumulated from the
    calibrated `p` and `1 - p`, tied scores forming one step (trapezoid)."""
    p = np.asarray(p, dtype="float64")
    scores = np.asarray(scores, dtype="float64")
    pos, neg = p.sum(), (1 - p).sum()
    if pos <= 0 or neg <= 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, pp = scores[order], p[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last row of each tied group
    tps = np.r_[0.0, np.cumsum(pp)[last]]
    fps = np.r_[0.0, np.cumsum(1 - pp)[last]]
    return float(np.trapezoid(tps / pos, fps / neg))


def expected_confusion(p: np.ndarray, hard: np.ndarray, k: int) -> np.ndarray:
    """Expected confusion matrix C[true, predicted] from calibrated probabilities: binary `p` is
    the positive class's probability (classes 0 = negative, 1 = positive), multi-class `p` (n, k)."""
    if p.ndim == 1:
        p = np.column_stack([1 - p, p])
    onehot = np.eye(k)[hard]
    return p.T @ onehot


def _f1_from_confusion(c: np.ndarray) -> np.ndarray:
    tp = np.diag(c)
    denom = 2 * tp + (c.sum(axis=0) - tp) + (c.sum(axis=1) - tp)
    return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)


def _point_binary(p: np.ndarray, s: np.ndarray) -> dict[str, float]:
    hard = (s >= 0.5).astype(int)
    c = expected_confusion(p, hard, 2)
    f1 = _f1_from_confusion(c)
    sc = np.clip(s, EPS, 1 - EPS)
    return {
        "roc_auc": cbpe_roc_auc(p, s),
        "accuracy": float(np.trace(c) / len(p)),
        "f1": float(f1[1]),
        "macro_f1": float(f1.mean()),
        "log_loss": float(np.mean(-(p * np.log(sc) + (1 - p) * np.log(1 - sc)))),
        "brier": float(np.mean(p * (1 - s) ** 2 + (1 - p) * s ** 2)),
    }


def _point_multiclass(p: np.ndarray, s: np.ndarray) -> dict[str, float]:
    k = s.shape[1]
    hard = s.argmax(axis=1)
    c = expected_confusion(p, hard, k)
    sc = np.clip(s, EPS, 1.0)
    sc = sc / sc.sum(axis=1, keepdims=True)
    return {
        "roc_auc": float(np.mean([cbpe_roc_auc(p[:, j], s[:, j]) for j in range(k)])),
        "accuracy": float(np.trace(c) / len(p)),
        "macro_f1": float(_f1_from_confusion(c).mean()),
        "log_loss": float(np.mean(-(p * np.log(sc)).sum(axis=1))),
    }


def _avg_ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, method="average")


def _sampled_binary(y: np.ndarray, s: np.ndarray, ranks: np.ndarray) -> dict[str, np.ndarray]:
    """The realized metrics of label draws `y` (B, n) of 0/1 against the served scores `s`."""
    n = y.shape[1]
    hard = (s >= 0.5).astype(float)
    npos = y.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (y @ ranks - npos * (npos + 1) / 2) / (npos * (n - npos))
    tp, fp = y @ hard, (1 - y) @ hard
    fn, tn = y @ (1 - hard), (1 - y) @ (1 - hard)
    f1_pos = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12), 0.0)
    f1_neg = np.where(2 * tn + fp + fn > 0, 2 * tn / np.maximum(2 * tn + fp + fn, 1e-12), 0.0)
    sc = np.clip(s, EPS, 1 - EPS)
    return {
        "roc_auc": auc,
        "accuracy": (tp + tn) / n,
        "f1": f1_pos,
        "macro_f1": (f1_pos + f1_neg) / 2,
        "log_loss": -(y @ np.log(sc) + (1 - y) @ np.log(1 - sc)) / n,
        "brier": (y @ (1 - s) ** 2 + (1 - y) @ s ** 2) / n,
    }


def _sampled_multiclass(codes: np.ndarray, s: np.ndarray, ranks: list[np.ndarray]) -> dict[str, np.ndarray]:
    b, n = codes.shape
    k = s.shape[1]
    hard = s.argmax(axis=1)
    sc = np.clip(s, EPS, 1.0)
    logs = np.log(sc / sc.sum(axis=1, keepdims=True))
    aucs, f1s = [], []
    for j in range(k):
        y = (codes == j).astype(float)
        h = (hard == j).astype(float)
        npos = y.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs.append((y @ ranks[j] - npos * (npos + 1) / 2) / (npos * (n - npos)))
        tp, fp, fn = y @ h, (1 - y) @ h, y @ (1 - h)
        f1s.append(np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12), 0.0))
    return {
        "roc_auc": np.mean(aucs, axis=0),
        "accuracy": (codes == hard).mean(axis=1),
        "macro_f1": np.mean(f1s, axis=0),
        "log_loss": -np.take_along_axis(np.broadcast_to(logs, (b, n, k)), codes[..., None],
                                        axis=2)[..., 0].mean(axis=1),
    }


def _band(draws: np.ndarray) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float("nan"), float("nan")
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return float(lo), float(hi)


def estimate_classification(est: PerformanceEstimator, scores: np.ndarray,
                            metrics: list[str] | None = None, seed: int = 0,
                            bootstrap: int = BOOTSTRAP, corrected: bool = True) -> dict[str, Estimate]:
    """CBPE of the day's served scores (as `model.predict_scores` or the prediction log gives
    them): each metric's expected value and its 95 % parametric-bootstrap band, moved and
    widened by the estimator's day correction unless `corrected=False`."""
    s = np.asarray(scores, dtype="float64")
    p = est.calibrate(s)
    metrics = metrics or est.metrics()
    n = len(s)
    rng = np.random.default_rng(seed)
    chunks = []
    step = max(1, min(bootstrap, 2_000_000 // max(n, 1)))
    if est.kind == "binary":
        point = _point_binary(p, s)
        ranks = _avg_ranks(s)
        for start in range(0, bootstrap, step):
            y = (rng.random((min(step, bootstrap - start), n)) < p).astype(float)
            chunks.append(_sampled_binary(y, s, ranks))
    else:
        point = _point_multiclass(p, s)
        ranks = [_avg_ranks(s[:, j]) for j in range(s.shape[1])]
        cum = np.cumsum(p, axis=1)
        cum[:, -1] = 1.0
        for start in range(0, bootstrap, step):
            u = rng.random((min(step, bootstrap - start), n, 1))
            codes = (u > cum[None, :, :]).sum(axis=2)
            chunks.append(_sampled_multiclass(codes, s, ranks))
    out = {}
    for m in metrics:
        draws = np.concatenate([c[m] for c in chunks])
        lo, hi = _band(draws)
        e = Estimate(m, point[m], min(lo, point[m]), max(hi, point[m]), n)
        out[m] = _corrected(est, m, e.value, e.lower, e.upper, n) if corrected else e
    return out


# ---- DLE --------------------------------------------------------------------------------------
def estimate_regression(est: PerformanceEstimator, model: Any, X: Any, predictions: np.ndarray,
                        metrics: list[str] | None = None, corrected: bool = True) -> dict[str, Estimate]:
    """DLE of the day's rows: MAE, RMSE and R2 from the predicted losses, analytic 95 % bands
    (with the estimator's day correction unless `corrected=False`)."""
    features = loss_features(model, X, predictions)
    abs_err = np.clip(est.loss_models["abs"].predict(features), 0, None)
    sq_err = np.clip(est.loss_models["sq"].predict(features), 0, None)
    n = len(abs_err)
    mae, msq = float(abs_err.mean()), float(sq_err.mean())
    se_mae = est.residual_sd["abs"] / math.sqrt(n)
    se_msq = est.residual_sd["sq"] / math.sqrt(n)
    rmse = math.sqrt(msq)
    se_rmse = se_msq / (2 * rmse) if rmse > 0 else se_msq
    r2 = 1 - msq / est.target_var if est.target_var > 0 else float("nan")
    se_r2 = se_msq / est.target_var if est.target_var > 0 else float("nan")
    values = {"mae": (mae, se_mae), "rmse": (rmse, se_rmse), "r2": (r2, se_r2)}
    out = {}
    for m in metrics or est.metrics():
        v, se = values[m]
        e = Estimate(m, v, v - Z95 * se, v + Z95 * se, n)
        out[m] = _corrected(est, m, e.value, e.lower, e.upper, n) if corrected else e
    return out


# ---- judging the estimate ---------------------------------------------------------------------
def threshold(metric: str, rule: Any, holdout: dict[str, float] | None) -> float | None:
    """The line an estimate must stay on the right side of: the gate's floor, or the champion's
    holdout metric less the gate's tolerance, whichever is stricter."""
    from mlops_pipeline.deployment.gate import GREATER_IS_BETTER

    up = GREATER_IS_BETTER[metric]
    lines = [] if rule.floor is None else [rule.floor]
    if holdout and metric in holdout and math.isfinite(holdout[metric]):
        lines.append(holdout[metric] - rule.tolerance if up else holdout[metric] + rule.tolerance)
    if not lines:
        return None
    return max(lines) if up else min(lines)


def degradation(estimates: dict[str, Estimate], gate: dict, holdout: dict[str, float] | None
                ) -> list[str]:
    """Why the estimate says the model got worse, one line per metric whose whole band is on the
    wrong side of its threshold (`threshold`); empty when none is."""
    from mlops_pipeline.deployment.gate import GREATER_IS_BETTER

    reasons = []
    for metric, rule in gate.items():
        est = estimates.get(metric)
        line = threshold(metric, rule, holdout) if est else None
        if est is None or line is None or not math.isfinite(est.value):
            continue
        up = GREATER_IS_BETTER[metric]
        if (est.upper < line) if up else (est.lower > line):
            reasons.append(f"estimated {metric} {est.value:.4f} [{est.lower:.4f}, {est.upper:.4f}] "
                           f"is {'below' if up else 'above'} {line:.4f} with its whole band")
    return reasons


def realized_drop(realized: dict[str, float], gate: dict, holdout: dict[str, float] | None
                  ) -> list[str]:
    """Realized metrics worse than the champion's holdout by more than the gate's tolerance (or
    past the floor): half of the concept-drift signal, the other half being unchanged inputs."""
    from mlops_pipeline.deployment.gate import GREATER_IS_BETTER

    reasons = []
    for metric, rule in gate.items():
        value = realized.get(metric)
        line = threshold(metric, rule, holdout)
        if value is None or line is None or not math.isfinite(value):
            continue
        if (value < line) if GREATER_IS_BETTER[metric] else (value > line):
            reasons.append(f"realized {metric} {value:.4f} is past {line:.4f}")
    return reasons
