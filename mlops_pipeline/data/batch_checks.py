"""Data checks per landed batch (and over the whole snapshot): pure pandas, no Dagster.

A check over the whole snapshot dilutes a bad batch: 60% nulls in a 3,000-row batch is 2% of a
year. So every landed batch is also checked on its own, against the contract (columns, dtypes,
null limits) and its `domain:` section (allowed categories, ranges, time windows), with limits from
the dataset config's `checks:` section. Each finding names the batch file, the column and example
values, so the person on call knows which file to fix or remove.

Every check here blocks (ERROR): each one describes data that would train a model on something
other than the domain the contract describes, and the gate cannot see that (a model trained on a
poisoned batch can still score well on a holdout drawn from the same poison).
"""

from __future__ import annotations

import math

import pandas as pd

from mlops_pipeline.data.contract import Contract
from mlops_pipeline.data.domain import (
    EXAMPLES,
    DomainTally,
    Finding,
    as_datetimes,
    examples,
)
from mlops_pipeline.data.snapshots import Batch
from mlops_pipeline.spec import DatasetSpec

#: Check name -> what it asks, for the Dagster check specs and the README.
BATCH_CHECKS: dict[str, str] = {
    "batch_columns": "Does each landed batch have every contract column, and no column nobody knows?",
    "batch_dtypes": "Does each batch carry each contract column in its type (no numbers as text, "
    "no unparseable timestamps)?",
    "batch_null_rates": "Is each column's share of nulls under its limit in each batch on its own?",
    "batch_unseen_categories": "Are categories outside the contract's allowed values rare in each batch?",
    "batch_out_of_range": "Are numeric values outside the contract's ranges rare in each batch?",
    "batch_time_window": "Are each batch's timestamps inside the contract's time window?",
    "batch_future_timestamps": "Are each batch's timestamps no later than when it landed?",
    "batch_class_balance": "Does each batch hold more than one class of the target?",
    "batch_duplicates": "Is each batch free of duplicated records, within itself and against the "
    "batches landed before it (by key, else whole row)?",
    "batch_unit_change": "Does each ratio-scale numeric column keep the scale of the contract's "
    "expectations (no whole column ~k x the reference at every quantile: a unit change)? Columns "
    "with too few positive values in a batch are not judged.",
}
def _kind(dtype) -> str:
    name = str(dtype).lower()
    if name.startswith(("int", "uint")):
        return "int"
    if name.startswith("float"):
        return "float"
    if name.startswith("datetime"):
        return "datetime"
    if name.startswith("bool"):
        return "bool"
    return "other"


# ---- checks of one frame -----------------------------------------------------------------------
def dtype_findings(name: str, df: pd.DataFrame, contract: Contract) -> list[Finding]:
    """Numbers sent as text and values that are not numbers or timestamps at all are refused:
    the contract's coercion would silently turn `"273"` into 273 (and a typo into a crash)."""
    out = []
    for col, column in contract.schema.columns.items():
        if col not in df.columns:
            continue
        s, kind = df[col], _kind(column.dtype)
        values = s.dropna()
        if values.empty:
            continue
        if kind in ("int", "float") and not pd.api.types.is_numeric_dtype(s):
            numeric = pd.to_numeric(values, errors="coerce")
            strings = values[numeric.notna()]
            junk = values[numeric.isna()]
            parts = []
            if len(strings):
                parts.append(f"{len(strings)} number(s) sent as text")
            if len(junk):
                parts.append(f"{len(junk)} value(s) that are not numbers")
            out.append(Finding("batch_dtypes", name, col,
                               f"expected {column.dtype}: " + " and ".join(parts),
                               examples([*junk.head(EXAMPLES), *strings.head(EXAMPLES)])))
        elif kind == "int" and pd.api.types.is_float_dtype(s) and not (values % 1 == 0).all():
            bad = values[values % 1 != 0]
            out.append(Finding("batch_dtypes", name, col,
                               f"expected whole numbers: {len(bad)} fractional value(s)",
                               examples(bad.head(EXAMPLES))))
        elif kind == "datetime" and not pd.api.types.is_datetime64_any_dtype(s):
            parsed = pd.to_datetime(values.astype(str), format="mixed", errors="coerce")
            bad = values[parsed.isna()]
            if len(bad):
                out.append(Finding("batch_dtypes", name, col,
                                   f"{len(bad)} value(s) are not timestamps", examples(bad.head(EXAMPLES))))
        elif kind in ("int", "float", "datetime", "bool") and str(s.dtype) == "object":
            out.append(Finding("batch_dtypes", name, col, f"expected {column.dtype}, got text",
                               examples(values.head(EXAMPLES))))
    return out


def null_rate_findings(name: str, df: pd.DataFrame, contract: Contract, sigmas: float) -> list[Finding]:
    """Each column's null share against its limit, plus a binomial allowance of `sigmas` standard
    deviations so a small batch is not refused for sampling noise."""
    out = []
    n = len(df)
    if not n:
        return out
    for col in contract.columns:
        if col not in df.columns:
            continue
        rate, limit = float(df[col].isna().mean()), contract.null_limit(col)
        allowed = limit + sigmas * math.sqrt(max(limit * (1 - limit), 1 / n) / n)
        if rate > allowed and rate > limit:
            out.append(Finding("batch_null_rates", name, col,
                               f"{rate:.1%} nulls in {n} rows; limit {limit:.1%} "
                               f"(+{allowed - limit:.1%} sampling allowance at this size)"))
    return out


def domain_findings(
    name: str, df: pd.DataFrame, contract: Contract, spec: DatasetSpec, prefix: str = "batch_"
) -> list[Finding]:
    """Unseen categories, out-of-range numbers and timestamps outside the time window, as shares
    against the limits in `spec.checks` (the rule is `feature_checks.DomainTally`'s, which also
    judges a table read a chunk at a time)."""

    tally = DomainTally(contract, spec)
    tally.add(df)
    return tally.findings(name, prefix)


def future_findings(batch: Batch, spec: DatasetSpec, contract: Contract, now: pd.Timestamp) -> list[Finding]:
    """Timestamps later than the batch's landing (its file time, else `now`), beyond a tolerance."""
    landed = batch.landed_at if batch.landed_at is not None else now
    limit = landed + pd.Timedelta(hours=spec.checks.future_tolerance_hours)
    out = []
    for col in contract.domain.time_window or _datetime_contract_columns(contract):
        if col not in batch.frame.columns:
            continue
        values = as_datetimes(batch.frame[col]).dropna()
        late = values[values > limit]
        if len(late):
            out.append(Finding("batch_future_timestamps", batch.name, col,
                               f"{len(late)} timestamp(s) after the batch landed ({landed:%Y-%m-%d %H:%M})",
                               examples(late.sort_values(ascending=False).astype(str))))
    return out


def _datetime_contract_columns(contract: Contract) -> list[str]:
    return [c for c, col in contract.schema.columns.items() if _kind(col.dtype) == "datetime"]


def class_balance_findings(
    name: str, df: pd.DataFrame, spec: DatasetSpec, check: str = "batch_class_balance"
) -> list[Finding]:
    """Classification: the rarest class's share in a batch with enough labelled rows."""
    from mlops_pipeline.data.preparation import derive_target

    if spec.task != "classification":
        return []
    try:
        labelled, _ = derive_target(df, spec)
    except (KeyError, ValueError, TypeError):
        return []  # the columns check names what is missing; the dtypes check, what is malformed
    target = labelled[spec.target.name].dropna()
    if len(target) < spec.checks.class_balance_min_rows:
        return []
    shares = target.value_counts(normalize=True)
    classes = sorted(set(target.unique()), key=str)
    if len(shares) > 1 and shares.min() >= spec.checks.min_class_share:
        return []
    rarest = 0.0 if len(shares) == 1 else float(shares.min())
    return [Finding(check, name, spec.target.name,
                    f"{len(target)} labelled rows hold {len(classes)} class(es); the rarest makes "
                    f"{rarest:.1%} (minimum {spec.checks.min_class_share:.1%})",
                    examples(f"{k}: {v:.1%}" for k, v in shares.items()))]


def duplicate_findings(
    name: str, df: pd.DataFrame, spec: DatasetSpec, check: str = "batch_duplicates"
) -> list[Finding]:
    """With key columns, any repeated key; without, fully duplicated rows above a share."""
    if df.empty:
        return []
    keys = [c for c in spec.key_columns if c in df.columns]
    if spec.key_columns:
        if len(keys) < len(spec.key_columns):
            return []  # the columns check names the missing key column
        dup = df.duplicated(subset=keys, keep=False)
        if not dup.any():
            return []
        repeated = df.loc[dup, keys].head(EXAMPLES).astype(str).agg("/".join, axis=1)
        return [Finding(check, name, ", ".join(keys),
                        f"{int(df.duplicated(subset=keys).sum())} row(s) repeat a key", examples(repeated))]
    hashable = df.apply(lambda s: s.astype(str) if s.dtype == object else s)
    share = float(hashable.duplicated().mean())
    if share <= spec.checks.max_duplicate_share:
        return []
    return [Finding(check, name, None,
                    f"{share:.1%} of rows duplicate another row entirely (no key columns configured; "
                    f"limit {spec.checks.max_duplicate_share:.1%})",
                    examples(df[hashable.duplicated()].head(EXAMPLES).index.astype(str)))]


def unit_change_findings(
    name: str, df: pd.DataFrame, contract: Contract, time_column: str | None = None
) -> list[Finding]:
    """Columns of the batch rescaled as a whole against the contract's `expectations:` (the rule
    is `expectations.measure`; the batch's span from `time_column`): the message names the factor."""
    from mlops_pipeline.data import expectations

    out = []
    for m in expectations.check(df, contract.expectations, time_column):
        if m.unit_change:
            out.append(Finding("batch_unit_change", name, m.column, m.message(),
                               (f"median {m.median:.4g} vs reference {m.reference_median:.4g}",)))
    return out


# ---- checks of all landed batches ----------------------------------------------------------
def check_batch(
    b: Batch, contract: Contract, spec: DatasetSpec, others: set[str], now: pd.Timestamp
) -> list[Finding]:
    """Every batch check on one batch. `others` is the union of the other landed batches' columns
    (a column in neither them nor the contract is unknown), so the landing area can be checked one
    batch at a time, holding one batch in memory."""
    found: list[Finding] = []
    missing = [c for c in contract.columns if c not in b.frame.columns]
    if missing:
        found.append(Finding("batch_columns", b.name, ", ".join(missing),
                             f"{len(missing)} contract column(s) missing"))
    known = set(contract.columns) | others
    extra = [c for c in b.frame.columns if c not in known and not str(c).startswith("_")]
    if extra:
        found.append(Finding(
            "batch_columns", b.name, ", ".join(map(str, extra)),
            "column(s) neither in the contract nor in any other batch: a changed format? "
            "add them to the contract or drop them"))
    if b.frame.empty:
        return [*found, Finding("batch_columns", b.name, None, "the batch has no rows")]
    return [
        *found,
        *dtype_findings(b.name, b.frame, contract),
        *null_rate_findings(b.name, b.frame, contract, spec.checks.null_rate_allowance_sigmas),
        *domain_findings(b.name, b.frame, contract, spec),
        *future_findings(b, spec, contract, now),
        *class_balance_findings(b.name, b.frame, spec),
        *duplicate_findings(b.name, b.frame, spec),
        *unit_change_findings(b.name, b.frame, contract, spec.time_column),
    ]


def other_columns(columns: list[set[str]]) -> list[set[str]]:
    """For each batch's columns, the union of the other batches' columns (same order); a lone
    batch counts as its own other (nothing it has is unknown for lack of company)."""
    if len(columns) == 1:
        return [set(columns[0])]
    counts: dict[str, int] = {}
    for cols in columns:
        for c in cols:
            counts[c] = counts.get(c, 0) + 1
    return [{c for c, n in counts.items() if n > (c in cols)} for cols in columns]


def no_findings() -> dict[str, list[Finding]]:
    """{check name: []} for every batch check: what `check_batch`'s findings are gathered into."""
    return {name: [] for name in BATCH_CHECKS}


def check_batches(
    batches: list[Batch], contract: Contract, spec: DatasetSpec, now: pd.Timestamp | None = None
) -> dict[str, list[Finding]]:
    """Every batch check on every batch: {check name: findings} (an empty list passes)."""
    now = now if now is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
    found = no_findings()
    others = other_columns([set(b.frame.columns) for b in batches])
    for b, rest in zip(batches, others, strict=True):
        for f in check_batch(b, contract, spec, rest, now):
            found[f.check].append(f)
    return found


def check_overall(df: pd.DataFrame, contract: Contract, spec: DatasetSpec) -> dict[str, list[Finding]]:
    """The domain checks and the class balance over all data at once: {check name: findings}
    (`feature_checks.DomainTally` over one frame)."""

    tally = DomainTally(contract, spec)
    tally.add(df)
    return tally.overall()


def summary(check: str, findings: list[Finding], checked: str) -> str:
    """One description for a check result: what passed, or every finding (batch, column, values)."""
    if not findings:
        if check == "batch_unit_change":
            from mlops_pipeline.data.expectations import MIN_VALUES

            return (f"{checked}: passed (a column with fewer than {MIN_VALUES} positive values in a "
                    "batch is not judged)")
        return f"{checked}: passed"
    return f"{len(findings)} problem(s): " + "; ".join(f.describe() for f in findings)
