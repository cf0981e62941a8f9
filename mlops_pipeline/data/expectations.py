"""Distribution expectations: THE rule that tells a unit change from legitimate change, per batch.

A range check does not see wind speed sent in m/s instead of mph: the values stay inside the
range. What a unit change does is multiply every value of the column by the same factor k, so
every quantile moves by k and the shape (each quantile relative to the others) stays as it was.
Legitimate change does not look like that: a summer moves temperature's low quantiles more than
its high ones, a batch of a few hundred rows wobbles a little.

`contract infer` drafts an `expectations:` section from the data it infers from: for each numeric
measurement column on a ratio scale (never negative; keys, the time column and booleans left out)
the reference quantiles of its positive values, and how far the column's level legitimately moves
between parts of the reference itself: `max_factor` between 12 parts (consecutive in time when the
spec has a time column, random otherwise: for a year of flights about a month each),
`sampling_factor` between 12 random parts (sampling noise alone) and, with a time column,
`short_max_factor` between 96 time-ordered parts (a few days: weather moves more in a day than in a
month). Each is the largest factor measured, widened. A zero stays zero under any factor, so only
the positive values are compared.

A landed batch blocks (`batch_unit_change`) when, for a column with at least `min_values` positive
values, the factor k fitted to its quantiles (the median of the per-quantile log ratios) is beyond
the allowance at the batch's size and time span (`ColumnExpectation.allowed`; never within
x1/1.3..x1.3), and the batch divided by k matches the reference's shape within `shape_tolerance`
(or within a quarter of |log k| for a huge factor): a consistent rescaling, not a season. Plain
numpy over each batch (a bounded sample of a huge one); pandera keeps the schema, this rule is ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mlops_pipeline.spec import DatasetSpec

#: The quantiles compared (of each column's positive values).
PROBS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
#: Columns (and batches) with fewer positive values than this are not judged.
MIN_VALUES = 100
#: A factor within x1/1.3..x1.3 never blocks, whatever a column's own `max_factor`.
MIN_FACTOR = 1.3
#: A column's drafted `max_factor` is the largest factor measured between parts of the reference,
#: in log terms times this.
WIDEN = 1.5
#: Parts the reference is split into to measure how far a column's level moves legitimately, and
#: (with a time column) the shorter parts that measure it for a batch spanning less time.
PARTS = 12
SHORT_PARTS = 96
#: Largest `shape_change` of a consistent rescaling (below a quarter of |log k| for a huge factor).
SHAPE_TOLERANCE = 0.3
#: Added to both log-scale spreads before comparing them (a column of one value has none).
SPREAD_FLOOR = 0.05
#: Values read per column of a batch (a deterministic stride sample above this).
MAX_SAMPLE = 1_000_000


@dataclass(frozen=True)
class ColumnExpectation:
    """The reference of one column: `quantiles` at `PROBS` of its positive values, how many
    positive values it was drafted from, `max_factor` (the largest factor, x or 1/x, between
    parts of the reference of `part_values` positive values each: time and sampling together) and
    `sampling_factor` (the same between random parts of that size: sampling alone)."""

    quantiles: tuple[float, ...]
    values: int
    max_factor: float
    part_values: int
    sampling_factor: float
    #: With a time column: the same as `max_factor` between shorter parts (`short_part_days`).
    short_max_factor: float | None = None

    def allowed(self, n: int, span_days: float | None, ex: Expectations) -> float:
        """The largest factor a batch of `n` positive values spanning `span_days` (None: no time
        column) may move by, never below `ex.min_factor`: `max_factor` for a batch spanning a
        part (a sample of a month moves like the month), more for a shorter span (interpolated
        in log-log to `short_max_factor`, grown as 1/sqrt(span) below it: a day's weather moves
        more than a month's), plus for fewer values than a part the extra sampling noise
        (`sampling_factor`, grown as 1/sqrt(n))."""
        level = math.log(self.max_factor)
        if span_days is not None and ex.part_days and self.short_max_factor and ex.short_part_days:
            short = math.log(self.short_max_factor)
            span = max(span_days, 1 / 24)
            if span < ex.short_part_days:
                level = max(level, short * math.sqrt(ex.short_part_days / span))
            elif span < ex.part_days:
                level = max(level, float(np.interp(
                    math.log(span), [math.log(ex.short_part_days), math.log(ex.part_days)],
                    [short, level])))
        extra = math.log(self.sampling_factor) * max(0.0, math.sqrt(self.part_values / n) - 1)
        return max(ex.min_factor, math.exp(level + extra))


@dataclass(frozen=True)
class Expectations:
    """The contract's `expectations:` section (none: nothing judged)."""

    columns: dict[str, ColumnExpectation] = field(default_factory=dict)
    probs: tuple[float, ...] = PROBS
    min_values: int = MIN_VALUES
    min_factor: float = MIN_FACTOR
    #: Days a time-ordered part of the reference spans (long and short parts); None: no time column.
    part_days: float | None = None
    short_part_days: float | None = None
    shape_tolerance: float = SHAPE_TOLERANCE

    @classmethod
    def from_doc(cls, doc: dict | None) -> Expectations:
        """From the contract document's `expectations:` mapping (absent: an empty one)."""
        doc = doc or {}
        return cls(
            columns={
                c: ColumnExpectation(tuple(float(q) for q in d["quantiles"]), int(d["values"]),
                                     float(d["max_factor"]), int(d["part_values"]),
                                     float(d["sampling_factor"]),
                                     None if d.get("short_max_factor") is None
                                     else float(d["short_max_factor"]))
                for c, d in (doc.get("columns") or {}).items()
            },
            probs=tuple(float(p) for p in doc.get("probs", PROBS)),
            min_values=int(doc.get("min_values", MIN_VALUES)),
            min_factor=float(doc.get("min_factor", MIN_FACTOR)),
            part_days=None if doc.get("part_days") is None else float(doc["part_days"]),
            short_part_days=None if doc.get("short_part_days") is None
            else float(doc["short_part_days"]),
            shape_tolerance=float(doc.get("shape_tolerance", SHAPE_TOLERANCE)),
        )


@dataclass(frozen=True)
class Scale:
    """A batch column measured against its reference: the fitted `factor`, how much the shape
    moved once it is divided out (`residual`, `shape_change`), the largest factor allowed at this
    batch's size, and whether that is a unit change."""

    column: str
    values: int
    factor: float
    residual: float
    allowed: float
    unit_change: bool
    median: float  # of the batch's positive values
    reference_median: float

    def message(self) -> str:
        return (f"values ~{self.factor:.3g}x the reference: a unit change? (every quantile moved "
                f"by that factor, shape unchanged; legitimate batches stay within "
                f"x{1 / self.allowed:.2f}..x{self.allowed:.2f})")


def positive_values(s: pd.Series) -> np.ndarray:
    """The finite positive values of `s` as floats (text that is not a number dropped), at most
    `MAX_SAMPLE` of them (an even stride through the column)."""
    if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        s = pd.to_numeric(s, errors="coerce")
    v = s.to_numpy(dtype="float64", na_value=np.nan)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) > MAX_SAMPLE:
        v = v[:: math.ceil(len(v) / MAX_SAMPLE)]
    return v


def fit_factor(quantiles: np.ndarray, reference: np.ndarray) -> tuple[float, np.ndarray]:
    """(k, deviations): the factor that best maps `reference` onto `quantiles` (the median log
    ratio) and each quantile's log deviation from it (all zero for an exact rescaling)."""
    r = np.log(quantiles / reference)
    k = float(np.median(r))
    return math.exp(k), r - k


def shape_change(deviations: np.ndarray, span: float) -> float:
    """How much the shape moved once the factor is divided out: the larger of the log change of
    the log-scale spread between the outermost quantiles (`span` in the reference: a season
    narrows or widens it, a rescaling never does) and twice the median |deviation| (most
    quantiles agree on one factor). Zero for an exact rescaling."""
    spread = max(span + deviations[-1] - deviations[0], 0.0)
    tails = abs(math.log((spread + SPREAD_FLOOR) / (span + SPREAD_FLOOR)))
    return max(tails, 2 * float(np.median(np.abs(deviations))))


def measure(
    column: str, s: pd.Series, ref: ColumnExpectation, ex: Expectations, span_days: float | None = None
) -> Scale | None:
    """The batch column `s` (of a batch spanning `span_days`; None: unknown) against `ref`; None
    when it has fewer than `min_values` positive values (too few to judge)."""
    v = positive_values(s)
    if len(v) < ex.min_values:
        return None
    reference = np.asarray(ref.quantiles)
    k, dev = fit_factor(np.quantile(v, ex.probs), reference)
    moved = shape_change(dev, math.log(reference[-1] / reference[0]))
    allowed = ref.allowed(len(v), span_days, ex)
    size = abs(math.log(k))
    consistent = moved <= max(ex.shape_tolerance, size / 4)
    return Scale(column, len(v), k, moved, allowed,
                 unit_change=size > math.log(allowed) and consistent, median=float(np.median(v)),
                 reference_median=float(np.interp(0.5, ex.probs, reference)))


def span_days(times: pd.Series) -> float | None:
    """Days between the first and last timestamp of `times` (None when none parses)."""
    t = pd.to_datetime(times, errors="coerce", format="mixed") if not \
        pd.api.types.is_datetime64_any_dtype(times) else times
    lo, hi = t.min(), t.max()
    return None if pd.isna(lo) or pd.isna(hi) else (hi - lo) / pd.Timedelta(days=1)


def check(df: pd.DataFrame, ex: Expectations, time_column: str | None = None) -> list[Scale]:
    """Every judged column of the batch `df` (present, with enough positive values); its time
    span from `time_column` when given and present."""
    span = span_days(df[time_column]) if time_column and time_column in df.columns else None
    out = []
    for col, ref in ex.columns.items():
        if col in df.columns:
            m = measure(col, df[col], ref, ex, span)
            if m is not None:
                out.append(m)
    return out


# ---- drafting (`contract infer`) ----------------------------------------------------------------
def ratio_columns(sample: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """Numeric measurement columns on a ratio scale: never negative, not a key, the time column
    or a boolean, with at least `MIN_VALUES` positive values."""
    skip = {*spec.key_columns, getattr(spec, "time_column", None)}
    out = []
    for col in sample.columns:
        s = sample[col]
        if col in skip or pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            continue
        if (s < 0).any() or int((s > 0).sum()) < MIN_VALUES:
            continue
        out.append(col)
    return out


def _parts(sample: pd.DataFrame, spec: DatasetSpec, count: int, seed: int) -> list[np.ndarray]:
    """Row positions of `count` parts of the reference: consecutive in time with a time column
    (what landing month after month looks like), random otherwise."""
    time_col = getattr(spec, "time_column", None)
    if time_col and time_col in sample.columns:
        times = pd.to_datetime(sample[time_col], errors="coerce").to_numpy()
        order = np.argsort(times, kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(len(sample))
    return [p for p in np.array_split(order, count) if len(p)]


def _max_factor(values: pd.Series, ref: np.ndarray, parts: list[np.ndarray]) -> tuple[int, float]:
    """(positive values in a typical part, the largest factor between a part and the whole,
    widened); parts with fewer than `MIN_VALUES` positive values left out."""
    spread, sizes = 0.0, []
    for rows in parts:
        pv = positive_values(values.iloc[rows])
        if len(pv) >= MIN_VALUES:
            spread = max(spread, abs(math.log(fit_factor(np.quantile(pv, PROBS), ref)[0])))
            sizes.append(len(pv))
    size = int(np.median(sizes)) if sizes else len(positive_values(values))
    return size, math.ceil(math.exp(WIDEN * spread) * 100) / 100


def infer_expectations(sample: pd.DataFrame, spec: DatasetSpec, seed: int = 0) -> dict[str, Any]:
    """The `expectations:` section of a draft contract (see the module docstring)."""
    columns: dict[str, dict] = {}
    parts = _parts(sample, spec, PARTS, seed)
    shuffled = np.array_split(np.random.default_rng(seed).permutation(len(sample)), PARTS)
    time_col = getattr(spec, "time_column", None)
    timed = bool(time_col and time_col in sample.columns and span_days(sample[time_col]))
    short = _parts(sample, spec, SHORT_PARTS, seed) if timed else []
    for col in ratio_columns(sample, spec):
        v = positive_values(sample[col])
        ref = np.quantile(v, PROBS)
        part_values, max_factor = _max_factor(sample[col], ref, parts)
        columns[col] = {
            "quantiles": [float(f"{q:.6g}") for q in ref],
            "values": len(v),
            "max_factor": max_factor,
            "part_values": part_values,
            "sampling_factor": _max_factor(sample[col], ref, shuffled)[1],
        }
        if timed:
            columns[col]["short_max_factor"] = _max_factor(sample[col], ref, short)[1]
    days = span_days(sample[time_col]) if timed else None
    return {"probs": list(PROBS), "min_values": MIN_VALUES, "min_factor": MIN_FACTOR,
            "shape_tolerance": SHAPE_TOLERANCE,
            "part_days": None if days is None else round(days / PARTS, 3),
            "short_part_days": None if days is None else round(days / SHORT_PARTS, 3),
            "columns": columns}
