"""Performance before the labels arrive: CBPE for classifiers, DLE for regressors. No Dagster.

Each model version carries a `PerformanceEstimator`, fitted at training time on its holdout, where
the labels are known (`estimation_fit`), and stored with the version like the drift reference:

- classification, confidence-based performance estimation (CBPE, as NannyML names it): isotonic
  calibrators of the served probability (binary: the positive class's; multi-class: one per class,
  one-vs-rest, rows renormalised to sum to one: NannyML's per-class method, which keeps the
  expected confusion matrix exact, where temperature scaling's single parameter cannot fix a model
  over-confident on one class and not another). The gate's metrics are their expectations under
  the calibrated probabilities (`cbpe`).
- regression, direct loss estimation (DLE): two small models of the champion's absolute and
  squared error on its own encoding of the features plus its prediction; MAE is the mean predicted
  absolute error, RMSE the root of the mean predicted squared error, R2 uses the holdout's target
  variance.

Uncertainty bands (95 %), from the day's sample size:
- classification: a parametric bootstrap (`BOOTSTRAP` label draws `y_i ~ p_i` over the day's rows):
  where the realized metric of these rows falls if the calibration holds.
- regression: the analytic standard error `sigma / sqrt(n)`, sigma being the out-of-fold spread of
  the loss model's residuals on the holdout (for RMSE and R2 through the delta method).
Every estimate is moved by the day bias measured on the holdout's days (`correct_by_groups`). The
bands cover label sampling only: neither the remaining day-to-day spread (`extra_sd`, reported) nor
a calibrator that stopped being right (concept drift) is in them, which is what checking the
estimate against the realized metric, once labels arrive, is for (`degradation`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops_pipeline.monitoring.cbpe import band, expected_metrics

BOOTSTRAP = 200
Z95 = 1.959964
#: Metrics this module estimates, per kind of target.
ESTIMABLE = {
    "binary": ("roc_auc", "accuracy", "f1", "macro_f1", "log_loss", "brier"),
    "multiclass": ("roc_auc", "accuracy", "macro_f1", "log_loss"),
    "regression": ("mae", "rmse", "r2"),
}


@dataclass(frozen=True)
class Estimate:
    """One estimated metric of one day's traffic: the value and its 95 % band."""

    metric: str
    value: float
    lower: float
    upper: float
    rows: int

    def contains(self, realized: float) -> bool:
        """Whether the realized metric fell inside the band."""
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
    threshold: float = 0.5  # a binary model's decision threshold (`model.threshold`), else 0.5

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
            "threshold": float(self.threshold),
        }
        return sio.dumps(state)

    @classmethod
    def from_bytes(cls, data: bytes) -> PerformanceEstimator:
        """The estimator `to_bytes` stored, trusting only the model module's types and the loss
        models' trees; class labels come back with their original types."""
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
            threshold=float(state.get("threshold", 0.5)),
        )


#: Types in a stored estimator that skops does not trust by default (the loss models' trees).
LOSS_MODEL_TYPES = ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",)


# ---- estimating one day's traffic -----------------------------------------------------------
def loss_features(model: Any, X: Any, predictions: np.ndarray) -> np.ndarray:
    """The loss model's inputs: the champion's own encoding of the features plus its prediction.
    A model that is not a pipeline (a `PythonModel`, another flavor through pyfunc) has no encoding
    to borrow: its numeric features are used as they are."""
    pipeline = model.get_raw_model() if hasattr(model, "get_raw_model") else model
    if hasattr(pipeline, "steps"):
        encoded = np.asarray(pipeline[:-1].transform(X), dtype="float64")
    else:
        encoded = X.select_dtypes(include=["number", "bool"]).to_numpy(dtype="float64")
    return np.column_stack([encoded, np.asarray(predictions, dtype="float64")])


def _corrected(est: PerformanceEstimator, m: str, value: float, lower: float, upper: float,
               rows: int) -> Estimate:
    """An estimate and its band moved by the estimator's day bias. The band is not widened by
    `extra_sd` (reported beside it): on flights that spread is as large as a real degradation, and
    a band that covers it could never be clear of a threshold, so the sensor would never fire."""
    bias = est.bias.get(m, 0.0)
    return Estimate(m, value + bias, lower + bias, upper + bias, rows)


def estimate_classification(est: PerformanceEstimator, scores: np.ndarray,
                            metrics: list[str] | None = None, seed: int = 0,
                            bootstrap: int = BOOTSTRAP, corrected: bool = True) -> dict[str, Estimate]:
    """CBPE of the day's served scores (as `model.predict_scores` or the prediction log gives
    them): each metric's expected value and its 95 % parametric-bootstrap band, moved by the
    estimator's day bias unless `corrected=False`."""
    s = np.asarray(scores, dtype="float64")
    p = est.calibrate(s)
    metrics = metrics or est.metrics()
    point, draws = expected_metrics(p, s, est.kind == "binary", metrics, bootstrap, seed,
                                    threshold=est.threshold)
    out = {}
    for m in metrics:
        lo, hi = band(draws[m])
        e = Estimate(m, point[m], min(lo, point[m]), max(hi, point[m]), len(s))
        out[m] = _corrected(est, m, e.value, e.lower, e.upper, len(s)) if corrected else e
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
