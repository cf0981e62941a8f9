"""The champion's performance estimated on its served answers, and the estimate met by labels.

Before labels, `estimate_rows` estimates the gate's metrics of a day's served rows (CBPE from the
logged probabilities, DLE from the inputs and logged values). Once labels arrive,
`compare_realized` puts the realized metrics next to those estimates: which fall outside their
band, and whether quality dropped past the gate's line beyond what the estimate foresaw — concept
drift when the inputs did not drift (`concept_verdict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops_pipeline.monitoring.champion import ChampionEstimator, contract_features

if TYPE_CHECKING:
    from mlops_pipeline.spec import DatasetSpec

#: Fewest labelled rows of the champion for realized metrics to be judged against the estimate.
MIN_LABELLED = 30


def estimate_rows(spec: DatasetSpec, champ: ChampionEstimator, rows: pd.DataFrame,
                  seed: int) -> dict[str, Any]:
    """The estimates (metric -> `estimation.Estimate`) of the gate's metrics on these served
    rows: CBPE from the logged probabilities, DLE from the inputs and logged values."""
    from mlops_pipeline.monitoring.estimation import estimate_classification, estimate_regression
    from mlops_pipeline.monitoring.quality import served_scores

    est = champ.estimator
    metrics = est.metrics(spec.gate)
    if est.kind == "regression":
        X = contract_features(rows, spec)
        return estimate_regression(est, champ.model, X, rows["prediction"].to_numpy(dtype=float), metrics)
    return estimate_classification(est, served_scores(rows, est), metrics, seed=seed)


def estimated_loss(spec: DatasetSpec, served: pd.DataFrame, champ: ChampionEstimator) -> np.ndarray:
    """Regression: each served row's absolute error as the champion's loss model (DLE) predicts
    it, in the rows' order (what the labeling queue ranks by)."""
    from mlops_pipeline.monitoring.estimation import loss_features

    X = contract_features(served, spec)
    features = loss_features(champ.model, X, served["prediction"].to_numpy(dtype=float))
    return np.clip(champ.estimator.loss_models["abs"].predict(features), 0, None)


def expected_confusion_table(rows: pd.DataFrame, champ: ChampionEstimator) -> dict[str, dict[str, float]]:
    """A classifier's expected confusion matrix on served rows, from its calibrated logged
    probabilities: {"true t": {"predicted q": expected count}} (binary: negative / positive)."""
    from mlops_pipeline.monitoring.cbpe import expected_confusion
    from mlops_pipeline.monitoring.quality import served_scores

    scores = served_scores(rows, champ.estimator)
    p = champ.estimator.calibrate(scores)
    hard = scores.argmax(axis=1) if scores.ndim == 2 else (scores >= 0.5).astype(int)
    names = [str(c) for c in champ.estimator.labels] if scores.ndim == 2 else ["negative", "positive"]
    matrix = expected_confusion(p, hard, len(names))
    return {f"true {t}": {f"predicted {q}": round(float(matrix[i, j]), 2) for j, q in enumerate(names)}
            for i, t in enumerate(names)}


def estimate_table(estimates: dict, spec: DatasetSpec, holdout: dict[str, float],
                   realized: dict[str, float] | None = None) -> str:
    """The estimates as a markdown table (band, the gate's line and floor, the champion's holdout
    value), with the realized value and the estimate's error when labels came."""
    from mlops_pipeline.monitoring.degradation import threshold

    head = "| metric | estimate | 95% band | threshold | floor | champion holdout |"
    sep = "|---|---|---|---|---|---|"
    if realized is not None:
        head, sep = head + " realized | error |", sep + "---|---|"
    lines = [head, sep]
    for m, e in estimates.items():
        rule = spec.gate.get(m)
        line = threshold(m, rule, holdout) if rule else None
        row = (f"| {m} | {e.value:.4f} | [{e.lower:.4f}, {e.upper:.4f}] | "
               f"{'' if line is None else f'{line:.4f}'} | "
               f"{'' if rule is None or rule.floor is None else rule.floor} | "
               f"{holdout.get(m, float('nan')):.4f} |")
        if realized is not None:
            r = realized.get(m, float("nan"))
            row += f" {r:.4f} | {r - e.value:+.4f} |"
        lines.append(row)
    return "\n".join(lines)


@dataclass
class RealizedComparison:
    """Realized metrics of labelled served rows next to their estimates."""

    realized: dict[str, float]
    estimates: dict[str, Any]
    #: One line per metric whose realized value is outside the estimate's band.
    outside: list[str]
    #: metric -> realized minus estimated.
    errors: dict[str, float]
    #: Metrics past the gate's line AND worse than the estimate's band (`degradation.realized_drop`).
    drops: list[str]


def too_few_labels(spec: DatasetSpec, labelled: pd.DataFrame) -> bool:
    """Whether labelled rows are too few to judge: under `MIN_LABELLED`, or a single class."""
    from mlops_pipeline.data.preparation import target_from_feedback

    if len(labelled) < MIN_LABELLED:
        return True
    y = target_from_feedback(labelled["label"], spec)
    return spec.task == "classification" and len(np.unique(y)) < 2


def compare_realized(spec: DatasetSpec, champ: ChampionEstimator, labelled: pd.DataFrame,
                     seed: int) -> RealizedComparison:
    """The realized gate metrics of labelled served rows (computed as on the holdout) against the
    estimates of the same rows. A drop counts only when the realized value is worse than the
    band: a drop the estimate foresaw is covariate shift, not concept drift."""
    from mlops_pipeline.data.preparation import target_from_feedback
    from mlops_pipeline.monitoring.degradation import realized_drop
    from mlops_pipeline.monitoring.quality import logged_scores
    from mlops_pipeline.training.metrics import GREATER_IS_BETTER
    from mlops_pipeline.training.model import compute_metrics

    y = target_from_feedback(labelled["label"], spec)
    scores, classes = logged_scores(labelled, spec.task)
    threshold = getattr(champ.estimator, "threshold", 0.5)
    if threshold != 0.5 and np.ndim(scores) == 1:  # the served answers' own threshold
        from dataclasses import replace

        from mlops_pipeline.training.model import ClassInfo

        if classes is None:  # answers logged without their classes: the 0/1 default
            classes, y = ClassInfo((0, 1), 1), np.asarray(y).astype(int)
        classes = replace(classes, threshold=threshold)
    realized = compute_metrics(spec.task, y, scores, classes)
    estimates = estimate_rows(spec, champ, labelled, seed)
    outside = [f"realized {m} {realized[m]:.4f} outside [{e.lower:.4f}, {e.upper:.4f}] "
               f"(estimated {e.value:.4f})"
               for m, e in estimates.items() if m in realized and not e.contains(realized[m])]
    errors = {m: float(realized[m] - e.value) for m, e in estimates.items() if m in realized}
    below_band = {m for m, e in estimates.items() if m in realized and not e.contains(realized[m])
                  and ((realized[m] < e.lower) if GREATER_IS_BETTER[m] else (realized[m] > e.upper))}
    drops = realized_drop({m: realized[m] for m in below_band}, spec.gate, champ.holdout)
    return RealizedComparison(realized, estimates, outside, errors, drops)


def concept_verdict(drops: list[str], inputs_ok: bool | None) -> tuple[bool, str]:
    """(concept drift?, why): quality dropped (`drops`) while the inputs did not drift.
    `inputs_ok` None (input drift not measured that day) does not clear the drop."""
    if not drops:
        return False, ("realized quality holds against the champion's holdout, or the estimate "
                       "foresaw its drop")
    if inputs_ok is False:
        return False, ("quality dropped but the inputs drifted too (see production_input_drift): "
                       + "; ".join(drops))
    return True, ("concept drift: quality dropped while the inputs did not drift"
                  + ("" if inputs_ok else " (input drift not measured for this day)")
                  + ": " + "; ".join(drops))
