"""THE eval gate: the one function that decides whether a candidate may become champion.

The asset checks, the `promote` command and CI all call `evaluate_gate`, so "passed the gate" means
the same thing everywhere. Candidate and champion are scored on the same holdout (the candidate's,
i.e. the most recent data) by the caller; this function only judges the numbers, which keeps it
pure and testable with plain dicts.

Per metric in the dataset spec's `gate:` section:
- **floor**: an absolute bound the candidate must meet (`>=` for metrics where larger is better,
  `<=` otherwise). This is what MLflow's `MetricThreshold(threshold=...)` expresses.
- **tolerance**: the largest regression against the champion that is still accepted
  (candidate >= champion - tolerance, or <= champion + tolerance). MLflow's
  `MetricThreshold(min_absolute_change=...)` demands an *improvement*; a retrain on fresh data that
  is merely as good as the champion must be able to ship, so the gate uses a tolerance instead.
The first model (no champion yet) passes on the floors alone. A NaN metric never passes.

The optional `inference_cost` rule (`gate: {inference_cost: {tolerance: 0.25}}`) judges CPU seconds
per 1,000 holdout rows, single-threaded, measured for candidate and champion on the same machine in
the same step (`promotion.inference_costs`): its tolerance is *relative* (0.25 = at most 25% above
the champion's) and its optional floor an absolute ceiling. Only the callers that load both models
from the registry (`model_version`, `promote`) can measure it; where the candidate's metrics carry
no cost (CI against a baseline, production quality) the rule is not part of the verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from mlops_pipeline.spec_sections import MetricGate
from mlops_pipeline.training.metrics import COST_METRIC, GREATER_IS_BETTER


@dataclass(frozen=True)
class MetricVerdict:
    """One gate metric as `evaluate_gate` judged it: the numbers, the rule, and both verdicts."""

    metric: str
    candidate: float
    champion: float | None
    floor: float | None
    tolerance: float
    greater_is_better: bool
    meets_floor: bool
    no_regression: bool
    #: The tolerance is a share of the champion's value (the cost rule), not an absolute amount.
    relative: bool = False

    @property
    def limit(self) -> float | None:
        """The worst value still accepted against the champion (None without a champion)."""
        if self.champion is None:
            return None
        slack = self.champion * self.tolerance if self.relative else self.tolerance
        return self.champion + slack if not self.greater_is_better else self.champion - slack

    @property
    def passed(self) -> bool:
        return self.meets_floor and self.no_regression


@dataclass(frozen=True)
class GateResult:
    """`evaluate_gate`'s verdict: passed when every judged metric meets its floor and does not regress."""

    verdicts: list[MetricVerdict] = field(default_factory=list)
    champion_version: str | None = None
    #: The per-segment verdict (`deployment.segments.SegmentReport`), None without segments.
    segments: Any = None

    @property
    def meets_floor(self) -> bool:
        return all(v.meets_floor for v in self.verdicts)

    @property
    def no_regression(self) -> bool:
        return all(v.no_regression for v in self.verdicts)

    @property
    def segments_pass(self) -> bool:
        """No segment regressed with confidence (`deployment.segments`)."""
        return self.segments is None or self.segments.passed

    @property
    def passed(self) -> bool:
        return self.meets_floor and self.no_regression and self.segments_pass

    def failures(self, kind: str = "all") -> list[str]:
        out = []
        for v in self.verdicts:
            better = ">=" if v.greater_is_better else "<="
            if kind in ("all", "floor") and not v.meets_floor:
                out.append(f"{v.metric}={v.candidate:.4f} is not {better} floor {v.floor}")
            if kind in ("all", "regression") and not v.no_regression:
                limit = v.limit
                out.append(
                    f"{v.metric}={v.candidate:.4f} regresses against champion "
                    f"v{self.champion_version} ({v.champion:.4f}; limit {limit:.4f})"
                )
        if kind in ("all", "segments") and self.segments is not None:
            out.extend(self.segments.failures())
        return out

    def as_rows(self) -> list[dict]:
        return [{**asdict(v), "passed": v.passed} for v in self.verdicts]


def _ok(value: float) -> bool:
    return value is not None and not math.isnan(value)


def evaluate_gate(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    policy: dict[str, MetricGate],
    champion_version: str | None = None,
    segments: Any = None,
) -> GateResult:
    """Judge each metric of `policy`: the candidate must meet its floor and stay within its tolerance of
    `champion` (floor only where the champion lacks the metric). ValueError on a metric the gate does
    not know, KeyError on one the candidate lacks; an unmeasured `inference_cost` is skipped.
    `segments`: the per-segment verdict (`deployment.segments.gate_segments`), part of `passed`."""
    verdicts = []
    for metric, rule in policy.items():
        if metric == COST_METRIC and metric not in candidate:
            continue  # not measurable here (see the module docstring)
        if metric not in GREATER_IS_BETTER:
            raise ValueError(f"gate metric {metric!r} is unknown; use one of {sorted(GREATER_IS_BETTER)}")
        if metric not in candidate:
            raise KeyError(f"gate metric {metric!r} was not computed for the candidate")
        up = GREATER_IS_BETTER[metric]
        cand = float(candidate[metric])
        champ = None if champion is None else champion.get(metric)
        if rule.floor is None:
            floor_ok = _ok(cand)
        else:
            floor_ok = _ok(cand) and (cand >= rule.floor if up else cand <= rule.floor)
        relative = metric == COST_METRIC
        slack = (float(champ) * rule.tolerance if relative else rule.tolerance) if champ is not None else 0
        if champ is None or not _ok(champ):
            regression_ok = _ok(cand)
        else:
            regression_ok = _ok(cand) and (
                cand >= champ - slack if up else cand <= champ + slack
            )
        verdicts.append(
            MetricVerdict(
                metric=metric,
                candidate=cand,
                champion=None if champ is None else float(champ),
                floor=rule.floor,
                tolerance=rule.tolerance,
                greater_is_better=up,
                meets_floor=floor_ok,
                no_regression=regression_ok,
                relative=relative,
            )
        )
    return GateResult(verdicts=verdicts, champion_version=champion_version, segments=segments)
