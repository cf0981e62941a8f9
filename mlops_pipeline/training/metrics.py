"""The metric catalogue: which metrics exist, which way is better, and which targets each applies to.

One home for these facts, read by the model (what it computes), the spec (a config naming a metric
its task cannot have fails at load), the gate and the estimator of performance before labels.
"""

from __future__ import annotations

GREATER_IS_BETTER = {
    "roc_auc": True, "f1": True, "r2": True, "accuracy": True, "macro_f1": True,
    "log_loss": False, "brier": False, "mae": False, "rmse": False,
    "inference_cost": False,
}

#: The gate's cost rule: CPU seconds per 1,000 rows (see the module docstring).
COST_METRIC = "inference_cost"

#: Which targets each metric is computed for (see `model.compute_metrics`).
REGRESSION_METRICS = frozenset({"mae", "rmse", "r2"})
BINARY_ONLY_METRICS = frozenset({"brier", "f1"})


def metric_task_problem(metric: str, task: str, n_classes: int | None = None) -> str | None:
    """Why `metric` cannot gate this task (one line naming the fix), or None when it can.

    `n_classes` is known only once a model is trained: at config load only the task is checked."""
    if metric not in GREATER_IS_BETTER:
        return f"gate metric {metric!r} is unknown; use one of {sorted(GREATER_IS_BETTER)}"
    if metric == COST_METRIC:
        return None
    if task == "regression" and metric not in REGRESSION_METRICS:
        return (f"gate metric {metric!r} needs a classification target; for regression use "
                f"{sorted(REGRESSION_METRICS)}")
    if task == "classification" and metric in REGRESSION_METRICS:
        return (f"gate metric {metric!r} needs a regression target; for classification use "
                f"{sorted(set(GREATER_IS_BETTER) - REGRESSION_METRICS)}")
    if task == "classification" and n_classes is not None and n_classes > 2 \
            and metric in BINARY_ONLY_METRICS:
        return (f"gate metric {metric!r} needs a binary target; this one has {n_classes} classes: "
                f"use log_loss, macro_f1, accuracy or roc_auc (one-vs-rest)")
    return None
