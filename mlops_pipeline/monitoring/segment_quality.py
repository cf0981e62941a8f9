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
