"""Input drift per segment: the group of users whose inputs moved, named even when the whole day's
drift share stays under its limit (one airport's weather feed frozen is a few columns of a third
of the rows: diluted overall, plain within that airport).

No second drift: THE drift computation (`monitoring.drift.compute_drift`, the spec's methods and
thresholds) is called once per segment, scores only (no HTML report), on the largest segments of
the day's served rows (`segments:` of the dataset spec, each with at least `min_rows` rows)
against the same segment of the champion's training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

#: Segments judged per day at most: the largest (by served rows) of those with `min_rows` rows.
TOP_SEGMENTS = 10


@dataclass(frozen=True)
class SegmentDrift:
    """One segment's input drift: its rows on both sides, the share of input columns drifted
    (None when the training data holds no row of it) and which."""

    segment: str
    rows: int
    reference_rows: int
    drift_share: float | None
    drifted_columns: tuple[str, ...]
    #: The input columns' mean score over its threshold: which of two equal shares moved further.
    excess: float = 0.0

    def describe(self) -> str:
        if self.drift_share is None:
            return f"segment {self.segment} ({self.rows} rows) is not in the training data"
        cols = f": {', '.join(self.drifted_columns)}" if self.drifted_columns else ""
        return (f"segment {self.segment} ({self.rows} rows): {self.drift_share:.0%} of input "
                f"columns drifted{cols}")

    def record(self) -> dict[str, Any]:
        return {"segment": self.segment, "rows": self.rows, "reference_rows": self.reference_rows,
                "drift_share": self.drift_share, "drifted_columns": ", ".join(self.drifted_columns)}


def segment_drift(reference: pd.DataFrame, current: pd.DataFrame, spec: Any,
                  top: int = TOP_SEGMENTS) -> list[SegmentDrift]:
    """Input drift of the `top` largest segments of `current` (served inputs, with `prediction`)
    against the same segments of `reference` (the champion's training data), worst first. Empty
    when the spec has no segments or either side lacks a segment column."""
    from mlops_pipeline.deployment.segments import define_segments
    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN, compute_drift

    seg = spec.segments
    dims = seg.dimensions
    if not seg.enabled or any(c not in current.columns or c not in reference.columns for c in dims):
        return []
    current, reference = current.reset_index(drop=True), reference.reset_index(drop=True)
    theirs = {s.name: s for s in define_segments(reference, seg)}
    mine = sorted((s for s in define_segments(current, seg) if len(s.rows) >= seg.min_rows),
                  key=lambda s: (-len(s.rows), s.name))[:top]
    categorical = list(spec.features.categorical)
    numerical = [*spec.features.numerical, PREDICTION_COLUMN]
    columns = [c for c in [*categorical, *numerical] if c in current.columns and c in reference.columns]
    out = []
    for s in mine:
        other = theirs.get(s.name)
        if other is None or not len(other.rows):
            out.append(SegmentDrift(s.name, len(s.rows), 0, None, ()))
            continue
        # The segment's own columns are fixed by it (origin is EWR on both sides): left out.
        own = set(s.column.split(" x "))
        cols = [c for c in columns if c not in own]
        ref, cur = reference.iloc[other.rows][cols], current.iloc[s.rows][cols]
        # A column the segment's requests stopped sending (all null) has no distribution to
        # compare: it counts as drifted; one the training rows never had is left out.
        gone = [c for c in cols if cur[c].isna().all() and ref[c].notna().any()]
        kept = [c for c in cols if c not in gone and ref[c].notna().any()]
        result = compute_drift(ref[kept], cur[kept], [c for c in categorical if c in kept],
                               [c for c in numerical if c in kept], spec.drift,
                               seed=spec.model.seed, report=False)
        inputs = result.input_columns
        n = len(inputs) + len([c for c in gone if c != PREDICTION_COLUMN])
        drifted = tuple(c for c in cols if c in {*result.drifted_columns, *gone}
                        and c != PREDICTION_COLUMN)
        excess = sum(min(c.score / c.threshold, 10.0) for c in inputs) / n if n else 0.0
        out.append(SegmentDrift(s.name, len(s.rows), len(other.rows), len(drifted) / n if n else 0.0,
                                drifted, float(excess)))
    return sorted(out, key=lambda d: (d.drift_share is not None, -(d.drift_share or 0.0), -d.excess))
