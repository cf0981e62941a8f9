"""Is the live model worse than the gate allows? The line a metric must stay on the right side of,
judged on the estimate before labels (its whole band past the line) and on the realized metric
once labels arrive. No Dagster.
"""

from __future__ import annotations

import math
from typing import Any

from mlops_pipeline.monitoring.estimation import Estimate


def threshold(metric: str, rule: Any, holdout: dict[str, float] | None) -> float | None:
    """The line an estimate must stay on the right side of: the gate's floor, or the champion's
    holdout metric less the gate's tolerance, whichever is stricter."""
    from mlops_pipeline.training.metrics import GREATER_IS_BETTER

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
    from mlops_pipeline.training.metrics import GREATER_IS_BETTER

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
    from mlops_pipeline.training.metrics import GREATER_IS_BETTER

    reasons = []
    for metric, rule in gate.items():
        value = realized.get(metric)
        line = threshold(metric, rule, holdout)
        if value is None or line is None or not math.isfinite(value):
            continue
        if (value < line) if GREATER_IS_BETTER[metric] else (value > line):
            reasons.append(f"realized {metric} {value:.4f} is past {line:.4f}")
    return reasons
