"""The data contract: one pandera schema, per-column null-rate limits and the data's domain, for
training AND serving.

A contract is generated once from real data (`mlops-pipeline contract infer`), reviewed by a
person, and committed. The draft keeps dtypes and nullability (time columns, and text columns that
parse cleanly as timestamps, become datetimes) and drafts a `domain:` section: the allowed values
of each categorical (the observed set), a plausible range for each numeric (the observed range
widened by a share of itself, never narrower) and a time window for each datetime column (a margin
before the first timestamp to a horizon after the last). The schema's hard checks are what every
single row and request must satisfy; the domain is what a landed batch is measured against, as
shares with limits (`mlops_pipeline.data.batch_checks`), so one new carrier does not refuse a
request while a batch full of them blocks training. Serving checks each record against the same
ranges and category lists, with the contract's `domain.policy` per column: `reject` (a 422; the
default) or `flag` (answered and marked; the draft flags categoricals). The draft also holds
`expectations:` (`mlops_pipeline.data.expectations`): per ratio-scale numeric column, reference
quantiles and how far its level moves legitimately, so a batch whose whole column is ~k x the
reference (a unit change inside the ranges) is refused.

Training validates the full source columns (features, time, keys, label sources); inference
validates the feature columns only, with the very same column definitions.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from mlops_pipeline.data.expectations import Expectations, infer_expectations
from mlops_pipeline.spec import DatasetSpec

if TYPE_CHECKING:
    import pandera.pandas as pa

FAILURE_COLUMNS = ["column", "check", "failure_case", "index"]


class ContractError(ValueError):
    """Data does not satisfy the contract; `failure_cases` says which column, check and value."""

    def __init__(self, message: str, failure_cases: pd.DataFrame):
        super().__init__(message)
        self.failure_cases = failure_cases


#: What serving does with a record outside the domain, per column (`domain.policy` in the contract).
DOMAIN_POLICIES = ("reject", "flag")
DEFAULT_DOMAIN_POLICY = "reject"


@dataclass(frozen=True)
class Domain:
    """What plausible data looks like, drafted from training data and reviewed by a person.

    `categories`: column -> allowed values; `ranges`: column -> (low, high), inclusive;
    `time_window`: column -> (start, end) timestamps, inclusive. `policy`: column -> what serving
    does with a record whose value is outside its category list or range (`reject`: 422, the
    default for a column not listed; `flag`: answered, marked `out_of_domain` and counted).
    """

    categories: dict[str, frozenset] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    time_window: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=dict)
    policy: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: dict | None) -> Domain:
        doc = doc or {}
        policy = {str(c): str(p) for c, p in (doc.get("policy") or {}).items()}
        bad = {c: p for c, p in policy.items() if p not in DOMAIN_POLICIES}
        if bad:
            raise ValueError(f"domain.policy: {bad} — each column's policy is one of "
                             f"{', '.join(DOMAIN_POLICIES)} (default {DEFAULT_DOMAIN_POLICY})")
        return cls(
            categories={c: frozenset(v) for c, v in (doc.get("categories") or {}).items()},
            ranges={c: (float(r["min"]), float(r["max"])) for c, r in (doc.get("ranges") or {}).items()},
            time_window={
                c: (pd.Timestamp(w["start"]), pd.Timestamp(w["end"]))
                for c, w in (doc.get("time_window") or {}).items()
            },
            policy=policy,
        )

    def policy_of(self, column: str) -> str:
        """What serving does with an out-of-domain value of `column`: `reject` unless the contract
        says `flag`."""
        return self.policy.get(column, DEFAULT_DOMAIN_POLICY)


@dataclass(frozen=True)
class Contract:
    """A loaded contract (`load_contract`): the pandera schema, per-column null-rate limits, the
    domain and the distribution expectations."""

    dataset: str
    schema: pa.DataFrameSchema
    max_null_rate: dict[str, float] = field(default_factory=dict)
    default_max_null_rate: float = 0.05
    domain: Domain = field(default_factory=Domain)
    expectations: Expectations = field(default_factory=Expectations)

    @property
    def columns(self) -> list[str]:
        return list(self.schema.columns)

    def null_limit(self, column: str) -> float:
        return self.max_null_rate.get(column, self.default_max_null_rate)

    def for_columns(self, columns: list[str]) -> pa.DataFrameSchema:
        """The same column definitions restricted to `columns` (serving: features only)."""
        return self.schema.select_columns([c for c in columns if c in self.schema.columns])


#: Categoricals with more distinct values than this get no allowed-value list (an id, not a category).
MAX_CATEGORIES = 1000


def datetime_columns(spec: DatasetSpec) -> list[str]:
    """Columns the spec itself says are timestamps: the time column and datetime-part sources."""
    named = [getattr(spec, "time_column", None), *spec.features.datetime_parts]
    return [c for c in dict.fromkeys(named) if c]


def parse_timestamps(s: pd.Series) -> pd.Series | None:
    """`s` as datetimes when every non-null value parses (ISO 8601 first, then pandas' inference);
    None when some value does not, or when the values are plain numbers (`"273"` is not a date)."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return s
    values = s.dropna()
    if values.empty or not all(isinstance(v, str) for v in values.head(1000)):
        return None
    if values.astype(str).str.fullmatch(r"\s*[-+]?\d+(\.\d*)?\s*").any():
        return None
    for fmt in ("ISO8601", None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                parsed = pd.to_datetime(s, format=fmt, errors="coerce")
            except (ValueError, TypeError, OverflowError):
                continue
        if parsed[s.notna()].notna().all():
            return parsed
    return None


def _round_out(low: float, high: float, integer: bool) -> tuple[float, float]:
    """Rounded outwards (whole numbers for integer columns, 4 decimals otherwise): never narrower."""
    scale = 1 if integer else 10_000
    return math.floor(low * scale) / scale, math.ceil(high * scale) / scale


def infer_contract(
    df: pd.DataFrame,
    spec: DatasetSpec,
    margin: float = 0.02,
    range_margin: float = 0.1,
    time_margin: float = 0.1,
    horizon_days: float = 365.0,
) -> dict:
    """Draft a contract document from data; a person reviews it before it is committed.

    Columns the spec names as timestamps must parse (a `ContractError` names the column and the
    values that do not); other text columns that parse cleanly become datetimes too. The domain
    is a draft for review: observed categories, numeric ranges widened by `range_margin` of the
    observed span on each side (kept non-negative when nothing observed was negative), and time
    windows from the first timestamp minus `time_margin` of the observed span to `horizon_days`
    after the last. `left_as_object(doc)` lists the columns still typed `object`.
    """
    import pandera.pandas as pa

    missing = [c for c in spec.source_columns if c not in df.columns]
    if missing:
        raise ContractError(f"cannot infer a contract: columns {missing} are not in the data",
                            pd.DataFrame(columns=FAILURE_COLUMNS))
    sample = df[spec.source_columns].copy()
    named_times = set(datetime_columns(spec))
    for col in sample.columns:
        if pd.api.types.is_datetime64_any_dtype(sample[col]):
            continue
        if col in named_times or sample[col].dtype == object:
            parsed = parse_timestamps(sample[col])
            if parsed is not None:
                sample[col] = parsed
            elif col in named_times:
                bad = sample[col].dropna()
                bad = bad[pd.to_datetime(bad.astype(str), format="mixed", errors="coerce").isna()]
                raise ContractError(
                    f"cannot infer a contract: column '{col}' is a time column in the config but "
                    f"{len(bad)} value(s) do not parse as timestamps, e.g. {bad.head(3).tolist()}",
                    pd.DataFrame({"column": col, "check": "parse_timestamp",
                                  "failure_case": bad.head(50).tolist(), "index": bad.head(50).index}),
                )
    for col in sample.columns:  # pandera's YAML has one datetime dtype: naive nanoseconds
        s = sample[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            sample[col] = (s.dt.tz_convert("UTC").dt.tz_localize(None) if s.dt.tz is not None
                           else s).astype("datetime64[ns]")
    inferred = pa.infer_schema(sample)
    columns = {
        name: pa.Column(col.dtype, nullable=bool(sample[name].isna().any()), name=name)
        for name, col in inferred.columns.items()
    }
    schema = pa.DataFrameSchema(columns, coerce=True, strict=False, name=spec.name)
    rates = sample.isna().mean()
    limits = {
        c: round(min(1.0, float(r) * 1.5 + margin), 4)
        for c, r in rates.items()
        if float(r) * 1.5 + margin > spec.checks.max_null_rate
    }
    return {
        "dataset": spec.name,
        "max_null_rate": limits,
        "domain": infer_domain(sample, spec, range_margin, time_margin, horizon_days),
        "expectations": infer_expectations(sample, spec),
        "schema": yaml.safe_load(schema.to_yaml()),
    }


def infer_domain(
    sample: pd.DataFrame, spec: DatasetSpec, range_margin: float = 0.1, time_margin: float = 0.1,
    horizon_days: float = 365.0,
) -> dict[str, Any]:
    """The `domain:` section of a draft contract (see `infer_contract`)."""
    categories: dict[str, list] = {}
    ranges: dict[str, dict[str, float]] = {}
    windows: dict[str, dict[str, str]] = {}
    for col in sample.columns:
        s = sample[col].dropna()
        if s.empty:
            continue
        if pd.api.types.is_datetime64_any_dtype(s):
            lo, hi = s.min(), s.max()
            pad = max((hi - lo) * time_margin, pd.Timedelta(days=1))
            windows[col] = {"start": str((lo - pad).floor("D")),
                            "end": str((hi + pd.Timedelta(days=horizon_days)).ceil("D"))}
        elif pd.api.types.is_bool_dtype(s):
            continue
        elif pd.api.types.is_numeric_dtype(s):
            lo, hi = float(s.min()), float(s.max())
            pad = (hi - lo) * range_margin or max(abs(hi) * 0.001, 1.0)  # constant: a step
            low = lo - pad if lo < 0 or lo - pad >= 0 else 0.0
            low, high = _round_out(low, hi + pad, pd.api.types.is_integer_dtype(s))
            ranges[col] = {"min": low, "max": high}
        elif col in spec.features.categorical:
            values = sorted({str(v) for v in s.unique()})
            if len(values) <= MAX_CATEGORIES:
                categories[col] = values
    # At serving a category the contract never listed is answered and flagged (a new airline is a
    # legitimate value the model's encoder takes), a number outside its range is refused (default).
    policy = {c: "flag" for c in categories}
    return {"categories": categories, "ranges": ranges, "time_window": windows, "policy": policy}


def left_as_object(doc: dict) -> list[str]:
    """Columns a drafted contract types as plain `object`: any string is accepted there, so a
    person should check none of them is really a date or a number."""
    cols = (doc.get("schema") or {}).get("columns") or {}
    return [c for c, d in cols.items() if str((d or {}).get("dtype")) in ("object", "str")]


def write_contract(doc: dict, path: Path) -> None:
    """Write a contract document (`infer_contract`) as YAML under a header for its reviewer; overwrites
    `path` (the CLI refuses an existing file without `--force`)."""
    header = (
        f"# Data contract for {doc['dataset']}: drafted by `mlops-pipeline contract infer`,\n"
        "# reviewed and committed. It guards training data and every prediction request.\n"
        "# max_null_rate: per-column limit on the share of nulls (others use the dataset default).\n"
        "# domain: allowed categories, plausible numeric ranges and time windows; landed batches are\n"
        "# checked against them (shares with limits under the dataset config's `checks:`); at serving\n"
        "# each record is checked too, and domain.policy says per column what happens to a value\n"
        "# outside: reject (422, the default for a column not listed) or flag (answered, marked).\n"
        "# expectations: reference quantiles of each ratio-scale numeric column; a landed batch whose\n"
        "# column is ~k x the reference at every quantile, k beyond max_factor, is refused (a unit change).\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))


def load_contract(spec: DatasetSpec, path: Path | None = None) -> Contract:
    """The committed contract of `spec` (or the file at `path`), with the spec's default null-rate limit;
    FileNotFoundError, saying how to draft one, when the file does not exist."""
    import pandera.pandas as pa

    p = path or spec.contract_path()
    if not p.exists():
        raise FileNotFoundError(
            f"data contract not found: {p}; draft one with "
            f"`mlops-pipeline contract infer --config <dataset.yaml>` and review it"
        )
    doc = yaml.safe_load(p.read_text())
    schema = pa.DataFrameSchema.from_yaml(yaml.safe_dump(doc["schema"]))
    return Contract(
        dataset=doc.get("dataset", spec.name),
        schema=schema,
        max_null_rate={k: float(v) for k, v in (doc.get("max_null_rate") or {}).items()},
        default_max_null_rate=spec.checks.max_null_rate,
        domain=Domain.from_doc(doc.get("domain")),
        expectations=Expectations.from_doc(doc.get("expectations")),
    )


def validate(df: pd.DataFrame, schema: pa.DataFrameSchema) -> pd.DataFrame:
    """Coerce to the contract's dtypes or raise `ContractError` listing every failure (lazy).

    The validated frame comes back without the `pandera` accessor pandera caches on it: the
    accessor holds the frame, so the pair is a reference cycle that only a full garbage collection
    frees, and every frame the contract guards (training splits, drift frames, each served request)
    would otherwise linger until then.
    """
    import pandera.errors as pe

    try:
        validated = schema.validate(df, lazy=True)
    except pe.SchemaErrors as exc:
        cases = exc.failure_cases.copy()
        for col in FAILURE_COLUMNS:
            if col not in cases:
                cases[col] = None
        cases = cases[FAILURE_COLUMNS]
        # A missing column is reported against the schema, with the column's name as the value.
        missing = cases["check"].astype(str).str.startswith("column_in_dataframe")
        cases.loc[missing, "column"] = cases.loc[missing, "failure_case"]
        summary = (
            cases.groupby(["column", "check"], dropna=False).size().reset_index(name="rows")
        )
        lines = [
            f"  column {r.column!r}: {r.check} ({r.rows} failing row(s))"
            if r.column is not None and r.column == r.column
            else f"  {r.check} ({r.rows} failing row(s))"
            for r in summary.itertuples()
        ]
        raise ContractError(
            f"data violates the contract '{schema.name}':\n" + "\n".join(lines), cases
        ) from None
    vars(validated).pop("pandera", None)
    return validated


def null_rates(df: pd.DataFrame, columns: list[str]) -> dict[str, float]:
    """Share of nulls in each of `columns` that `df` has (an absent column is left out, not counted null)."""
    present = [c for c in columns if c in df.columns]
    return {c: float(v) for c, v in df[present].isna().mean().items()}


def null_counts(df: pd.DataFrame, columns: list[str]) -> dict[str, int]:
    """Nulls in each of `columns` that `df` has (an absent column is left out)."""
    present = [c for c in columns if c in df.columns]
    return {c: int(v) for c, v in df[present].isna().sum().items()}


def null_count_violations(nulls: dict[str, int], rows: int, contract: Contract) -> dict:
    """The null-rate rule from counts (so a table read a chunk at a time is judged exactly as a
    frame): columns whose share of nulls in `rows` is above their limit, {column: (rate, limit)}.
    No rows, no violation."""
    return {
        c: (n / rows, contract.null_limit(c))
        for c, n in nulls.items()
        if rows and n / rows > contract.null_limit(c)
    }


def null_rate_violations(df: pd.DataFrame, contract: Contract, columns: list[str]) -> dict:
    """Columns whose null share is above their limit: {column: (rate, limit)}."""
    return null_count_violations(null_counts(df, columns), len(df), contract)
