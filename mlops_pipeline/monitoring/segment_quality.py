"""Production quality per segment: the group that quietly got worse, named before the average moves.

`model_quality` holds the day's labelled answers, over all rows, to the gate's floors. Here each
segment of the dataset spec's `segments:` is held to the same line with THE per-segment rule
(`deployment.segments.compare_segments` against a fixed line): a segment with at least `min_rows`
labelled answers fails when the whole bootstrap interval of its metric lies beyond the gate's
floor (`tolerance` below it; in the metric's own direction). The answers are the logged ones
(`quality.logged_scores`), the target derived from the label as in training, so a segment's
production figure means what its holdout figure means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlops_pipeline.deployment.segments import SegmentReport, compare_segments, segment_metric


@dataclass(frozen=True)
class SegmentQuality:
    """`segment_quality`'s answer: the table (None when it cannot be judged) and why not."""

    report: SegmentReport | None
    overall: float | None = None
    line: float | None = None
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.report is None or self.report.passed

    def describe(self) -> str:
        """One line naming every failing segment and where the overall figure stands."""
        if self.report is None:
            return self.reason
        metric = self.report.metric
        overall = f"overall {metric} {self.overall:.4f} against the line {self.line:.4f}"
        if self.report.passed:
            return (f"no segment crossed the gate's {metric} floor with "
                    f"{self.report.confidence:.0%} confidence ({len(self.report.rows)} segments; {overall})")
        return "; ".join(self.report.failures()) + f" ({overall})"


def segment_quality(labelled: pd.DataFrame, spec: Any) -> SegmentQuality:
    """Every segment of labelled served answers (`labelled`: the prediction store's rows with
    their features and `label`) judged against the floor of the first gate metric."""
    from mlops_pipeline.data.preparation import target_from_feedback
    from mlops_pipeline.deployment.segment_metrics import metric_values, scored
    from mlops_pipeline.monitoring.quality import logged_scores

    if not spec.segments.enabled:
        return SegmentQuality(None, reason="no segments in the dataset config")
    missing = [c for c in spec.segments.dimensions if c not in labelled.columns]
    if missing:
        return SegmentQuality(None, reason=f"the logged answers lack segment column(s) {missing}")
    rows = labelled.reset_index(drop=True)
    scores, classes = logged_scores(rows, spec.task)
    answers = scored(spec.task, target_from_feedback(rows["label"], spec), scores, classes)
    metric = segment_metric(spec.gate, answers.kind)
    rule = spec.gate.get(metric) if metric else None
    if rule is None or rule.floor is None:
        return SegmentQuality(None, reason="the first gate metric has no floor: no line to hold "
                              "segments to")
    overall = float(metric_values(metric, answers, [[1.0] * len(rows)])[0])
    report = compare_segments(rows, answers, None, spec.segments, metric, reference=rule.floor,
                              against="gate floor")
    return SegmentQuality(report, overall, float(rule.floor))


def estimated_segment_quality(rows: pd.DataFrame, spec: Any, champ: Any, seed: int = 0) -> SegmentQuality:
    """Before labels: each segment's estimated metric (`estimates.estimate_rows` on its served
    rows, CBPE or DLE, with its band) held to the gate's floor like `segment_quality` — a segment
    fails when its whole band lies below the floor by more than the tolerance. `champ` is the
    champion's `ChampionEstimator`."""
    from mlops_pipeline.deployment.segments import SegmentRow, define_segments
    from mlops_pipeline.monitoring.estimates import estimate_rows
    from mlops_pipeline.training.metrics import GREATER_IS_BETTER

    if not spec.segments.enabled:
        return SegmentQuality(None, reason="no segments in the dataset config")
    missing = [c for c in spec.segments.dimensions if c not in rows.columns]
    if missing:
        return SegmentQuality(None, reason=f"the logged answers lack segment column(s) {missing}")
    kind = {"binary": "binary", "multiclass": "multiclass"}.get(champ.estimator.kind, "regression")
    metric = segment_metric(spec.gate, kind)
    rule = spec.gate.get(metric) if metric else None
    if rule is None or rule.floor is None or metric not in champ.estimator.metrics(spec.gate):
        return SegmentQuality(None, reason="the first gate metric has no floor or no estimate")
    seg, line, sign = spec.segments, float(rule.floor), 1.0 if GREATER_IS_BETTER[metric] else -1.0
    rows = rows.reset_index(drop=True)
    overall = estimate_rows(spec, champ, rows, seed)[metric].value
    out = []
    for segment in define_segments(rows, seg):
        n = len(segment.rows)
        if n < seg.min_rows:
            out.append(SegmentRow(segment.name, segment.column, segment.value, n, float("nan"), None,
                                  float("nan"), float("nan"), float("nan"), "too few rows"))
            continue
        e = estimate_rows(spec, champ, rows.iloc[segment.rows], seed)[metric]
        low, high = sorted((sign * (e.lower - line), sign * (e.upper - line)))
        verdict = "regressed" if high < -seg.tolerance else "ok"
        out.append(SegmentRow(segment.name, segment.column, segment.value, n, float(e.value), None,
                              sign * (e.value - line), low, high, verdict))
    report = SegmentReport(metric, seg.tolerance, 0.95, seg.min_rows, tuple(out),
                           against="gate floor (estimated)")
    return SegmentQuality(report, float(overall), line)
