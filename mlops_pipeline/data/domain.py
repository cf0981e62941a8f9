"""The domain rules of the data checks, shared by every level they judge: one landed batch
(`batch_checks`), the whole training table read a chunk at a time (`feature_checks`), and each
served record (`RecordDomain`, compiled once per server). A finding names where (batch or all
data), the column and example values; `DomainTally` counts values over any number of chunks and
applies the spec's limits to the totals. `outside_range` and `outside_categories` are the rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops_pipeline.data.contract import parse_timestamps

if TYPE_CHECKING:
    from mlops_pipeline.data.contract import Contract, Domain
    from mlops_pipeline.spec import DatasetSpec

#: The domain checks that also run over the whole snapshot (on `training_features`).
OVERALL_CHECKS: dict[str, str] = {
    "unseen_categories": "Are categories outside the contract's allowed values rare overall?",
    "out_of_range": "Are numeric values outside the contract's ranges rare overall?",
    "time_window": "Are all timestamps inside the contract's time window?",
    "class_balance": "Does the training data hold more than one class of the target?",
}
EXAMPLES = 3


@dataclass(frozen=True)
class Finding:
    """One failed check on one batch (or on all data) and one column."""

    check: str
    batch: str
    column: str | None
    message: str
    examples: tuple[str, ...] = ()

    def describe(self) -> str:
        where = f"batch {self.batch}" + (f", column '{self.column}'" if self.column else "")
        ex = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        return f"{where}: {self.message}{ex}"


def examples(values: Iterable) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        text = repr(v) if isinstance(v, str) else str(v)
        if text not in out:
            out.append(text)
        if len(out) == EXAMPLES:
            break
    return tuple(out)


def as_datetimes(s: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.tz_convert("UTC").dt.tz_localize(None) if s.dt.tz is not None else s
    parsed = parse_timestamps(s.astype(object).where(s.notna(), None))
    return parsed if parsed is not None else pd.to_datetime(s, format="mixed", errors="coerce")


def as_numbers(s: pd.Series) -> pd.Series:
    return s if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) else (
        pd.to_numeric(s, errors="coerce")
    )


def outside_range(values: pd.Series | np.ndarray, low: float, high: float) -> np.ndarray:
    """True where a number is outside the inclusive range [low, high]; a missing value (NaN) never
    is (null rates have their own rule)."""
    a = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if a.dtype.kind not in "fiu":  # nullable, boolean or object numbers: as float64 (NA as NaN)
        a = pd.Series(a).to_numpy(dtype=np.float64, na_value=np.nan)
    return (a < low) | (a > high)


def outside_categories(values: pd.Series, allowed: frozenset) -> np.ndarray:
    """True where a value is not among the `allowed` categories (compared as text); a missing value
    never is. The distinct values are checked first: far fewer than the rows."""
    distinct = pd.unique(values.to_numpy())
    unseen = [v for v in distinct if not (isinstance(v, str) and v in allowed)
              and not pd.isna(v) and str(v) not in allowed]
    if not unseen:
        return np.zeros(len(values), dtype=bool)
    return values.isin(unseen).to_numpy()


@dataclass(frozen=True)
class RecordRule:
    """One column's domain rule at serving: its range or allowed values and the contract's policy."""

    column: str
    policy: str  # contract.DOMAIN_POLICIES
    low: float | None = None
    high: float | None = None
    allowed: frozenset | None = None

    def outside(self, values: pd.Series) -> np.ndarray:
        """True per row whose value breaks this rule (vectorised)."""
        if self.allowed is not None:
            return outside_categories(values, self.allowed)
        return outside_range(values, self.low, self.high)  # type: ignore[arg-type]

    def allowed_text(self) -> str:
        """What the rule allows, for a client: "allowed range [0, 23]" or the allowed values."""
        if self.allowed is None:
            return f"allowed range [{self.low:g}, {self.high:g}]"
        values = sorted(self.allowed)
        shown = ", ".join(values[:20]) + (f", ... ({len(values)} in all)" if len(values) > 20 else "")
        return f"allowed values {shown}"


class RecordDomain:
    """The contract's domain (ranges and allowed categories) compiled for `columns`, to judge each
    record of a frame in one vectorised pass per column: what serving checks per micro-batch."""

    def __init__(self, domain: Domain, columns: list[str]):
        rules = [RecordRule(c, domain.policy_of(c), *domain.ranges[c])
                 for c in columns if c in domain.ranges]
        rules += [RecordRule(c, domain.policy_of(c), allowed=frozenset(map(str, domain.categories[c])))
                  for c in columns if c in domain.categories and c not in domain.ranges]
        self.rules: tuple[RecordRule, ...] = tuple(rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def outside(self, df: pd.DataFrame) -> list[tuple[RecordRule, np.ndarray]]:
        """(rule, row positions outside it) for each rule some row of `df` breaks."""
        out = []
        for rule in self.rules:
            if rule.column in df.columns:
                hits = np.flatnonzero(rule.outside(df[rule.column]))
                if len(hits):
                    out.append((rule, hits))
        return out


#: Distinct unseen values of a column counted (for examples) once a first chunk has been counted.
MAX_TRACKED = 10_000
#: Where overall findings say they come from.
ALL_BATCHES = "(all batches)"


@dataclass
class _Tally:
    values: int = 0
    outside: int = 0
    counts: dict = field(default_factory=dict)  # unseen category -> rows
    first: list = field(default_factory=list)  # the first out-of-range values
    low: Any = None  # earliest / latest timestamp outside the window
    high: Any = None


class DomainTally:
    """`batch_checks.domain_findings` (and `check_overall`'s class balance) a chunk at a time:
    `add` each chunk, then `findings`/`overall` judge the totals exactly as one frame is judged."""

    def __init__(self, contract: Contract, spec: DatasetSpec):
        self.contract, self.spec, domain = contract, spec, contract.domain
        self.categories = {c: _Tally() for c in domain.categories}
        self.ranges = {c: _Tally() for c in domain.ranges}
        self.windows = {c: _Tally() for c in domain.time_window}
        self.classes: dict = {}
        self.labelled = 0
        self.has_target = False

    def add(self, df: pd.DataFrame) -> None:
        domain = self.contract.domain
        for col, allowed in domain.categories.items():
            if col in df.columns:
                values = df[col].dropna()
                unseen = values[outside_categories(values, allowed)]
                t = self.categories[col]
                t.values, t.outside = t.values + len(values), t.outside + len(unseen)
                fresh = not t.counts
                for v, n in unseen.value_counts(sort=False).items():
                    if fresh or v in t.counts or len(t.counts) < MAX_TRACKED:
                        t.counts[v] = t.counts.get(v, 0) + int(n)
        for col, (lo, hi) in domain.ranges.items():
            if col in df.columns:
                values = as_numbers(df[col]).dropna()
                outside = values[outside_range(values, lo, hi)]
                t = self.ranges[col]
                t.values, t.outside = t.values + len(values), t.outside + len(outside)
                t.first.extend(outside.head(max(0, EXAMPLES - len(t.first))))
        for col, (start, end) in domain.time_window.items():
            if col in df.columns:
                values = as_datetimes(df[col]).dropna()
                outside = values[(values < start) | (values > end)]
                t = self.windows[col]
                t.values, t.outside = t.values + len(values), t.outside + len(outside)
                if len(outside):
                    lo, hi = outside.min(), outside.max()
                    t.low = lo if t.low is None else min(t.low, lo)
                    t.high = hi if t.high is None else max(t.high, hi)
        target = self.spec.target.name
        if self.spec.task == "classification" and target in df.columns:
            self.has_target = True
            labels = df[target].dropna()
            self.labelled += len(labels)
            for k, n in labels.value_counts(sort=False).items():
                self.classes[k] = self.classes.get(k, 0) + int(n)

    def findings(self, name: str, prefix: str = "batch_") -> list[Finding]:
        """Unseen categories, out-of-range numbers and timestamps outside the time window, as shares
        of all rows added against the limits in `spec.checks` (`domain_findings`)."""
        limits, out = self.spec.checks, []
        for col, t in self.categories.items():
            share = t.outside / t.values if t.values else 0.0
            if share > limits.max_unseen_category_share:
                n = len(self.contract.domain.categories[col])
                common = pd.Series(t.counts, dtype="int64").sort_values(ascending=False).index
                out.append(Finding(f"{prefix}unseen_categories", name, col,
                                   f"{share:.1%} of values are not among the contract's "
                                   f"{n} allowed ones (limit {limits.max_unseen_category_share:.1%})",
                                   examples(common)))
        for col, t in self.ranges.items():
            share = t.outside / t.values if t.values else 0.0
            if share > limits.max_out_of_range_share:
                lo, hi = self.contract.domain.ranges[col]
                out.append(Finding(f"{prefix}out_of_range", name, col,
                                   f"{share:.1%} of values outside [{lo:g}, {hi:g}] "
                                   f"(limit {limits.max_out_of_range_share:.1%})", examples(t.first)))
        for col, t in self.windows.items():
            share = t.outside / t.values if t.values else 0.0
            if share > limits.max_outside_time_window_share:
                start, end = self.contract.domain.time_window[col]
                out.append(Finding(f"{prefix}time_window", name, col,
                                   f"{t.outside} timestamp(s) ({share:.1%}) outside the window "
                                   f"{start} .. {end}",
                                   examples(pd.Series([t.low, t.high]).astype(str))))
        return out

    def overall(self) -> dict[str, list[Finding]]:
        """`batch_checks.check_overall`: {check name: findings} over all rows added."""
        found: dict[str, list[Finding]] = {name: [] for name in OVERALL_CHECKS}
        for f in self.findings(ALL_BATCHES, prefix=""):
            found[f.check].append(f)
        if self.has_target and self.labelled:
            counts = pd.Series(self.classes, dtype="int64").sort_values(ascending=False)
            shares = counts / counts.sum()
            if len(shares) < 2 or shares.min() < self.spec.checks.min_class_share:
                rarest = float(shares.min()) if len(shares) > 1 else 0.0
                found["class_balance"].append(Finding(
                    "class_balance", ALL_BATCHES, self.spec.target.name,
                    f"{len(shares)} class(es); the rarest makes {rarest:.1%} "
                    f"(minimum {self.spec.checks.min_class_share:.1%})",
                    examples(f"{k}: {v:.1%}" for k, v in shares.items())))
        return found
