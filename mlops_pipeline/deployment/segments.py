"""THE per-segment comparison: metrics by segment with intervals, for every place a decision is
made (the eval gate, production quality, the estimates before labels, the release guard).

One number over all rows hides a group of users that quietly gets worse: a candidate better on
average and much worse for one airport is promoted, and production shows nothing until the
average moves. So the rows are cut into segments (`segments:` in the dataset spec: one per value
of a categorical column, per bin of a numeric one, per pair of a crossing) and each is judged on
its own with the gate's first metric.

The rule, the same everywhere: a segment with at least `min_rows` rows fails when it is worse than
its reference by more than `tolerance` *with confidence* — the whole `confidence` interval of the
difference lies beyond the tolerance. Against a champion (the gate, the release guard) the
interval is a seeded *paired* bootstrap: both models' metrics on the same resampled rows, so what
the models share cancels and a 40-row segment's noise does not block. Against a fixed line
(production quality per segment, the estimates before labels) it is the bootstrap interval of the
segment's metric. Smaller segments are shown, never decide.

Speed (no model call here: the callers pass the predictions they already computed): segments are
cut with one sort per column; each segment's resamples are drawn once as index counts and all
metrics of all resamples are a few matrix products (`segment_metrics`, numpy). A segment larger
than `BOOTSTRAP_ROWS` is resampled from a seeded subsample of that many rows and the spread scaled
by sqrt(subsample / rows) (the m-out-of-n bootstrap), centred on the full segment's estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops_pipeline.deployment.segment_metrics import Scored, applies, metric_values
from mlops_pipeline.spec_segments import SegmentsSpec
from mlops_pipeline.training.metrics import GREATER_IS_BETTER

BOOTSTRAP_ROWS = 4000
MISSING = "(missing)"


@dataclass(frozen=True)
class Segment:
    """One group of rows: `column` ("origin", or "carrier x origin"), its `value`, and the
    positions of its rows in the frame it was cut from."""

    column: str
    value: str
    rows: np.ndarray

    @property
    def name(self) -> str:
        return f"{self.column}={self.value}"


def _bin_labels(edges: list[float]) -> list[str]:
    def num(x: float) -> str:
        return f"{x:g}"
    inner = [f"[{num(a)}, {num(b)})" for a, b in zip(edges, edges[1:], strict=False)]
    return [f"< {num(edges[0])}", *inner, f">= {num(edges[-1])}"]


def _codes(frame: pd.DataFrame, column: str, spec: SegmentsSpec) -> tuple[np.ndarray, list[str]]:
    """Each row's segment code in `column` (-1: in no segment) and the segments' values."""
    s = frame[column]
    if column in spec.bins:
        edges = spec.bins[column]
        x = pd.to_numeric(s, errors="coerce").to_numpy("float64")
        codes = np.searchsorted(np.asarray(edges, dtype="float64"), x, side="right")
        labels = _bin_labels(edges)
        if np.isnan(x).any():
            codes = np.where(np.isnan(x), len(labels), codes)
            labels = [*labels, MISSING]
        return codes.astype(np.int64), labels
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    labels = [str(u) for u in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(labels), codes)
        labels = [*labels, MISSING]
    return codes.astype(np.int64), labels


def _split(column: str, codes: np.ndarray, labels: list[str], top: int) -> list[Segment]:
    """The `top` largest segments of `codes` (ties by label), rows in frame order."""
    counts = np.bincount(codes[codes >= 0], minlength=len(labels))
    keep = sorted((c for c in range(len(labels)) if counts[c]), key=lambda c: (-counts[c], labels[c]))
    order = np.argsort(codes, kind="stable")
    ends = np.cumsum(counts)
    offset = int((codes < 0).sum())
    out = []
    for c in keep[:top]:
        start = offset + (ends[c - 1] if c else 0)
        out.append(Segment(column, labels[c], order[start:offset + ends[c]]))
    return out


def define_segments(frame: pd.DataFrame, spec: SegmentsSpec) -> list[Segment]:
    """Every segment of `frame` the spec defines: per column, per bin, per crossing (each at most
    `max_values`, the largest). KeyError naming the column when `frame` lacks one."""
    missing = [c for c in spec.dimensions if c not in frame.columns]
    if missing:
        raise KeyError(f"segments: the compared rows lack column(s) {missing}")
    coded = {c: _codes(frame, c, spec) for c in spec.dimensions}
    out: list[Segment] = []
    for column, (codes, labels) in coded.items():
        out.extend(_split(column, codes, labels, spec.max_values))
    for a, b in spec.crossings:
        (ca, la), (cb, lb) = coded[a], coded[b]
        both = ca * len(lb) + cb
        labels = [f"{x} x {y}" for x in la for y in lb]
        out.extend(_split(f"{a} x {b}", both, labels, spec.max_values))
    return out


@dataclass(frozen=True)
class SegmentRow:
    """One segment's line of the table: rows, both metrics (champion None against a fixed line,
    then `reference` is the line), the difference (negative = worse, whichever way the metric
    points), its interval, and the verdict."""

    segment: str
    column: str
    value: str
    rows: int
    candidate: float
    champion: float | None
    difference: float
    low: float
    high: float
    verdict: str  # "regressed" | "ok" | "too few rows" | "undefined"

    @property
    def blocks(self) -> bool:
        return self.verdict == "regressed"


@dataclass(frozen=True)
class SegmentReport:
    """Every segment judged on `metric`: the table, and which segments regressed."""

    metric: str
    tolerance: float
    confidence: float
    min_rows: int
    rows: tuple[SegmentRow, ...]
    against: str = "champion"

    @property
    def passed(self) -> bool:
        return not self.blocking

    @property
    def blocking(self) -> list[SegmentRow]:
        return [r for r in self.rows if r.blocks]

    def worst(self, n: int = 5) -> list[SegmentRow]:
        """The `n` segments with the most negative difference, those that may decide first
        (too small or undefined ones after)."""
        return sorted(self.rows, key=lambda r: (r.verdict == "too few rows", np.isnan(r.difference),
                                                r.difference))[:n]

    def describe(self, row: SegmentRow) -> str:
        level = f"{self.confidence:.0%}"
        ref = "" if row.champion is None else f" vs {row.champion:.4f}"
        return (f"segment {row.segment} ({row.rows} rows): {self.metric} {row.candidate:.4f}{ref} "
                f"against the {self.against}, difference {row.difference:+.4f}, {level} interval "
                f"[{row.low:+.4f}, {row.high:+.4f}] entirely below -{self.tolerance:g}")

    def failures(self) -> list[str]:
        return [self.describe(r) for r in self.blocking]

    def records(self) -> list[dict[str, Any]]:
        """The table as plain records (for metadata, MLflow and the board): one per segment."""
        return [{k: (None if isinstance(v, float) and np.isnan(v) else v)
                 for k, v in asdict(r).items()} for r in self.rows]

    def markdown(self, limit: int | None = None) -> str:
        head = (f"| segment | rows | candidate | {self.against} | difference | "
                f"{self.confidence:.0%} interval | verdict |\n|---|---|---|---|---|---|---|\n")

        def f(v: float | None) -> str:
            return "" if v is None or np.isnan(v) else f"{v:.4f}"
        lines = [f"| {r.segment} | {r.rows} | {f(r.candidate)} | {f(r.champion)} | "
                 f"{f(r.difference)} | [{f(r.low)}, {f(r.high)}] | {r.verdict} |"
                 for r in (self.worst(limit) if limit else self.rows)]
        return head + "\n".join(lines)


def segment_metric(gate: dict, kind: str) -> str | None:
    """The metric segments are judged on: the first gate metric defined for this kind of target
    (binary, multiclass, regression), None when the gate has none."""
    return next((m for m in gate if applies(m, kind)), None)


def _draws(n: int, spec: SegmentsSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """(rows resampled, count matrix resamples x rows, spread scale): an exact bootstrap of the
    segment, or of a seeded `BOOTSTRAP_ROWS` subsample with its spread scaled to n rows."""
    m = min(n, BOOTSTRAP_ROWS)
    sub = np.arange(n) if m == n else np.sort(rng.choice(n, m, replace=False))
    idx = rng.integers(0, m, size=(spec.resamples, m)) + (np.arange(spec.resamples) * m)[:, None]
    counts = np.bincount(idx.ravel(), minlength=spec.resamples * m).reshape(spec.resamples, m)
    return sub, counts, float(np.sqrt(m / n))


def _interval(point: float, boot: np.ndarray, centre: float, scale: float,
              confidence: float) -> tuple[float, float]:
    boot = boot[np.isfinite(boot)]
    if np.isnan(point) or len(boot) < 10:
        return float("nan"), float("nan")
    lo, hi = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(point + (lo - centre) * scale), float(point + (hi - centre) * scale)


def compare_segments(frame: pd.DataFrame, candidate: Scored, champion: Scored | None,
                     spec: SegmentsSpec, metric: str, reference: float | None = None,
                     against: str = "champion") -> SegmentReport:
    """Judge every segment of `frame` (the compared rows, in the order of the scores).

    With `champion`: the candidate's metric minus the champion's on the same rows, paired
    bootstrap. Without: the candidate's metric minus `reference` (a fixed line, e.g. the holdout
    figure), bootstrap of the metric. Differences are oriented so negative is worse."""
    sign = 1.0 if GREATER_IS_BETTER[metric] else -1.0
    rng = np.random.default_rng(spec.seed)
    out = []
    for seg in define_segments(frame, spec):
        cand = candidate.take(seg.rows)
        champ = champion.take(seg.rows) if champion is not None else None
        whole = np.ones((1, len(seg.rows)))
        c_val = float(metric_values(metric, cand, whole)[0])
        base = (float(metric_values(metric, champ, whole)[0]) if champ is not None
                else float("nan") if reference is None else float(reference))
        point = sign * (c_val - base)
        n = len(seg.rows)
        if n < spec.min_rows:
            out.append(SegmentRow(seg.name, seg.column, seg.value, n, c_val,
                                  base if champ is not None else None, point,
                                  float("nan"), float("nan"), "too few rows"))
            continue
        sub, counts, scale = _draws(n, spec, rng)
        cs = cand.take(sub)
        boot = metric_values(metric, cs, counts)
        sub_c = float(metric_values(metric, cs, np.ones((1, len(sub))))[0])
        if champ is not None:
            hs = champ.take(sub)
            boot = boot - metric_values(metric, hs, counts)
            centre = sign * (sub_c - float(metric_values(metric, hs, np.ones((1, len(sub))))[0]))
        else:
            centre = sign * (sub_c - base)
        low, high = sorted(_interval(point, sign * (boot - (0 if champ is not None else base)),
                                     centre, scale, spec.confidence))
        verdict = ("undefined" if np.isnan(high) else
                   "regressed" if high < -spec.tolerance else "ok")
        out.append(SegmentRow(seg.name, seg.column, seg.value, n, c_val,
                              base if champ is not None else None, point, low, high, verdict))
    return SegmentReport(metric, spec.tolerance, spec.confidence, spec.min_rows, tuple(out), against)


def compare_unpaired(champion_frame: pd.DataFrame, champion: Scored, frame: pd.DataFrame,
                     candidate: Scored, spec: SegmentsSpec, metric: str) -> SegmentReport:
    """`compare_segments` for two sets of rows (the canary's requests against the champion's):
    each segment's metric on each side, each side resampled on its own; a segment decides when
    both sides have `min_rows` rows in it."""
    sign = 1.0 if GREATER_IS_BETTER[metric] else -1.0
    rng = np.random.default_rng(spec.seed)
    theirs = {seg.name: seg for seg in define_segments(champion_frame, spec)}
    out = []
    for seg in define_segments(frame, spec):
        other = theirs.get(seg.name)
        if other is None:
            continue
        sides = [candidate.take(seg.rows), champion.take(other.rows)]
        c_val, h_val = (float(metric_values(metric, x, np.ones((1, len(x.y))))[0]) for x in sides)
        point = sign * (c_val - h_val)
        n = min(len(seg.rows), len(other.rows))
        if n < spec.min_rows:
            out.append(SegmentRow(seg.name, seg.column, seg.value, len(seg.rows), c_val, h_val, point,
                                  float("nan"), float("nan"), "too few rows"))
            continue
        spread = []
        for x in sides:  # each side's deviations from its own estimate, scaled to its rows
            sub, counts, scale = _draws(len(x.y), spec, rng)
            part = x.take(sub)
            whole = float(metric_values(metric, part, np.ones((1, len(sub))))[0])
            spread.append((metric_values(metric, part, counts) - whole) * scale)
        low, high = _interval(point, point + sign * (spread[0] - spread[1]), point, 1.0,
                              spec.confidence)
        verdict = ("undefined" if np.isnan(high) else
                   "regressed" if high < -spec.tolerance else "ok")
        out.append(SegmentRow(seg.name, seg.column, seg.value, len(seg.rows), c_val, h_val, point,
                              low, high, verdict))
    return SegmentReport(metric, spec.tolerance, spec.confidence, spec.min_rows, tuple(out))


def gate_segments(frame: pd.DataFrame, candidate: Scored, champion: Scored | None, spec: Any,
                  ) -> SegmentReport | None:
    """The gate's per-segment verdict (None when the spec has no segments, there is no champion,
    or no gate metric applies): `compare_segments` on the first gate metric."""
    if not spec.segments.enabled or champion is None:
        return None
    metric = segment_metric(spec.gate, candidate.kind)
    if metric is None:
        return None
    return compare_segments(frame.reset_index(drop=True), candidate, champion, spec.segments, metric)


def log_segments(client: Any, run_id: str, report: SegmentReport,
                 artifact_file: str = "segments/gate.json") -> None:
    """The table as an MLflow table artifact of the candidate's run (`MlflowClient.log_table`)."""
    client.log_table(run_id, pd.DataFrame(report.records()), artifact_file)


#: A drafted tolerance for a metric without units (ROC AUC, accuracy, R², ...).
UNIT_FREE_TOLERANCE = 0.02
#: For an error in the target's own units (MAE, RMSE): this share of the baseline's error.
ERROR_SHARE = 0.05
TARGET_UNIT_METRICS = frozenset({"mae", "rmse"})


def draft_tolerance(frame: pd.DataFrame, spec: Any) -> tuple[float, str]:
    """The tolerance a drafted `segments:` proposes for the metric segments are judged on (the
    first gate metric), and how it was chosen, in words for the draft's comment: 0.02 for a metric
    without units; for an error in the target's units (MAE, RMSE), `ERROR_SHARE` of the error the
    baseline makes on the holdout — the training rows' mean (median for MAE) as every answer —
    to two significant digits, so "0.02" never means 0.02 visits or dollars by accident."""
    from mlops_pipeline.data.preparation import SPLIT_COLUMN, prepare

    kind = "regression" if spec.task == "regression" else "binary"
    metric = segment_metric(spec.gate, kind) or segment_metric(spec.gate, "multiclass")
    if metric not in TARGET_UNIT_METRICS:
        return UNIT_FREE_TOLERANCE, f"{metric or 'the gate metric'} has no units: {UNIT_FREE_TOLERANCE:g}"
    rows = prepare(frame, spec).frame
    y = rows[spec.target.name].astype(float)
    train, holdout = y[rows[SPLIT_COLUMN] == "train"], y[rows[SPLIT_COLUMN] == "holdout"]
    if train.empty or holdout.empty:
        return UNIT_FREE_TOLERANCE, (f"{metric} is in {spec.target.name}'s units but the landed rows "
                                     f"have no holdout to size it from: set it by hand")
    error = (float((holdout - train.median()).abs().mean()) if metric == "mae"
             else float(np.sqrt(((holdout - train.mean()) ** 2).mean())))
    tolerance = float(f"{error * ERROR_SHARE:.2g}") or UNIT_FREE_TOLERANCE
    return tolerance, (f"{ERROR_SHARE:.0%} of the baseline's {metric} {error:.3g} {spec.target.name} "
                       f"on the holdout ({'median' if metric == 'mae' else 'mean'} of the training "
                       "rows as every answer)")


def suggest_segments(frame: pd.DataFrame, spec: Any, max_values: int = 50,
                     tolerance: float | None = None) -> dict[str, Any]:
    """A draft `segments:` section from data: the feature and key columns with 2..`max_values`
    distinct values (categorical or not), and numeric features with more as quartile bands
    (edges rounded to 2 significant digits), the tolerance in the gate metric's units
    (`draft_tolerance`, unless given). A draft to review, like `contract infer`'s."""
    candidates = [c for c in dict.fromkeys([*spec.features.categorical, *spec.features.numerical,
                                            *spec.key_columns]) if c in frame.columns]
    columns, bins = [], {}
    for column in candidates:
        distinct = frame[column].nunique(dropna=True)
        if 2 <= distinct <= max_values:
            columns.append(column)
        elif column in spec.features.numerical and distinct > max_values:
            q = frame[column].quantile([0.25, 0.5, 0.75]).dropna().to_numpy(float)
            edges = sorted({float(f"{x:.2g}") for x in q})
            if edges:
                bins[column] = edges
    return {"columns": columns, "bins": bins, "min_rows": 200,
            "tolerance": draft_tolerance(frame, spec)[0] if tolerance is None else tolerance}
