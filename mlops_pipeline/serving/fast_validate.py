"""A micro-batch checked against the contract without a DataFrame: the pandera column definitions
compiled once into numpy checks over the batch's decoded columns.

pandera stays the definition (and what training validates with); this is the same contract read
once per server — each feature column's kind, nullability and checks (`greater_than`, `in_range`,
`isin`, ... as pandera evaluates them: nulls ignored) — plus the contract's domain rules
(`data.domain.RecordDomain`), evaluated column by column with numpy. It only ever answers "every
row passes" or "these rows do not": `FastValidator.check` is the hot path of `inputs.validate_micro_batch`,
and any batch with a row it does not pass goes through the pandera path (`inputs.validate_batch`),
which names each record and field with the same text as ever. So a bad record still fails alone,
with the same error; the equivalence of the two verdicts is tested over a property-based corpus
(`mlops_pipeline_tests/serving/test_fast_validate.py`).

A timestamp that is not ISO-8601 text pandas' own parser still reads (`01/05/2013 05:00`, a UTC
offset) is not judged here: its row is *deferred* and pandera's coercion decides, as before.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import pandera.pandas as pa

    from mlops_pipeline.data.domain import RecordDomain, RecordRule

#: A field the record did not send (decoded JSON objects; typed records always have every field).
MISSING = object()
_INT64 = (-(2**63), 2**63 - 1)

#: pandera's built-in column checks, as numpy over the non-null values: check name -> its test.
_CHECKS: dict[str, Callable[[dict[str, Any]], Callable[[np.ndarray], np.ndarray]]] = {
    "greater_than": lambda s: lambda a: a > s["min_value"],
    "greater_than_or_equal_to": lambda s: lambda a: a >= s["min_value"],
    "less_than": lambda s: lambda a: a < s["max_value"],
    "less_than_or_equal_to": lambda s: lambda a: a <= s["max_value"],
    "equal_to": lambda s: lambda a: a == s["value"],
    "not_equal_to": lambda s: lambda a: a != s["value"],
    "in_range": lambda s: lambda a: (
        (operator.ge if s.get("include_min", True) else operator.gt)(a, s["min_value"])
        & (operator.le if s.get("include_max", True) else operator.lt)(a, s["max_value"])),
    "isin": lambda s: lambda a: np.fromiter((v in s["allowed_values"] for v in a), bool, len(a)),
    "notin": lambda s: lambda a: np.fromiter((v not in s["forbidden_values"] for v in a), bool, len(a)),
}


@dataclass(frozen=True)
class Verdict:
    """A micro-batch's columns in the contract dtypes (None where one could not be built), the rows
    the contract refuses, and the rows left to pandera's own timestamp parsing."""

    arrays: dict[str, np.ndarray] | None
    bad: np.ndarray
    deferred: np.ndarray

    @property
    def clean(self) -> bool:
        return self.arrays is not None and not self.bad.any() and not self.deferred.any()


class FastValidator:
    """The contract's feature columns compiled once: `check(columns)` judges a micro-batch.

    `fields` is `RecordChecker.fields` ((column, kind, nullable)). `supported` is False when the
    schema holds something compiled here cannot judge (a custom check, a dataframe-level check,
    uniqueness, a column of kind `any`): every batch then takes the pandera path."""

    def __init__(self, schema: pa.DataFrameSchema, fields: Sequence[tuple[str, str, bool]],
                 domain: RecordDomain):
        self.fields = list(fields)
        self.domain = domain
        self.checks: dict[str, list[Callable[[np.ndarray], np.ndarray]]] = {}
        self.why_not: str | None = None
        if schema.checks or getattr(schema, "unique", None):
            self.why_not = "dataframe-level checks"
        for col, kind, _ in self.fields:
            column = schema.columns[col]
            if kind == "any" or column.unique:
                self.why_not = f"column {col!r} ({kind}, unique={column.unique})"
            compiled = []
            for check in column.checks:
                make = _CHECKS.get(check.name)
                if make is None or not getattr(check, "ignore_na", True):
                    self.why_not = f"check {check.name!r} on {col!r}"
                    continue
                compiled.append(make(dict(check.statistics)))
            self.checks[col] = compiled

    @property
    def supported(self) -> bool:
        return self.why_not is None

    def check(self, columns: dict[str, list[Any]]) -> Verdict:
        """Each feature's values (a list per column, one value per record: typed records' fields,
        or decoded JSON with `MISSING` for an absent field) against the contract: the record checks
        (type, null, finite numbers), then the schema's column checks on the non-null values."""
        n = len(columns[self.fields[0][0]]) if self.fields else 0
        bad = np.zeros(n, dtype=bool)
        deferred = np.zeros(n, dtype=bool)
        arrays: dict[str, np.ndarray] = {}
        for col, kind, nullable in self.fields:
            values = columns[col]
            arr, col_bad, col_deferred = _typed(kind, nullable, values)
            bad |= col_bad
            if col_deferred is not None:
                deferred |= col_deferred
            if arr is None:
                continue
            arrays[col] = arr
            if self.checks[col]:
                bad |= self._failing(col, arr, col_bad)
        return Verdict(arrays if len(arrays) == len(self.fields) else None, bad, deferred)

    def _failing(self, col: str, arr: np.ndarray, already: np.ndarray) -> np.ndarray:
        """Rows whose non-null value fails one of the column's checks (pandera's ignore_na)."""
        live = ~(pd.isna(arr) | already)
        out = np.zeros(len(arr), dtype=bool)
        if not live.any():
            return out
        values = arr[live]
        for test in self.checks[col]:
            with np.errstate(invalid="ignore"):
                ok = np.asarray(test(values), dtype=bool)
            out[np.flatnonzero(live)[~ok]] = True
        return out

    def outside(self, arrays: dict[str, np.ndarray]) -> list[tuple[RecordRule, np.ndarray]]:
        """(rule, row positions outside it) for each domain rule a row breaks: `RecordDomain.outside`
        over columns instead of a frame. A category rule looks at the distinct values first and
        only hands the column to the rule itself when one is not allowed."""
        from mlops_pipeline.data.domain import outside_range

        out = []
        for rule in self.domain.rules:
            values = arrays.get(rule.column)
            if values is None:
                continue
            if rule.allowed is None:
                hits = np.flatnonzero(outside_range(values, rule.low, rule.high))  # type: ignore[arg-type]
            elif all(isinstance(v, str) and v in rule.allowed for v in set(values.tolist()) if v is not None):
                continue
            else:
                hits = np.flatnonzero(rule.outside(pd.Series(values, dtype=object)))
            if len(hits):
                out.append((rule, hits))
        return out


_DTYPES = {"int": np.int64, "float": np.float64, "bool": bool, "str": object}
#: What stands in for a refused value, so the column still has one entry per row.
_FILL = {"int": 0, "float": None, "bool": False, "str": None}


def _typed(kind: str, nullable: bool, values: list[Any]
           ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(the column in its contract dtype, a stand-in where a row is refused; rows refused; rows
    deferred or None). The column is None only when it cannot be built (an integer column with
    nulls): then every row is deferred to pandera."""
    n = len(values)
    if kind == "datetime":
        return _timestamps(values, nullable)
    types = set(map(type, values))
    allowed = {"int": {int}, "float": {int, float}, "bool": {bool}, "str": {str}}[kind]
    if types <= allowed | ({type(None)} if nullable else set()):
        try:
            arr = np.array(values, dtype=_DTYPES[kind])  # float: None -> NaN
            if kind != "float" or np.count_nonzero(~np.isfinite(arr)) == values.count(None):
                return arr, np.zeros(n, dtype=bool), None
        except (OverflowError, ValueError, TypeError):
            pass
    bad = _row_mask(kind, nullable, values)  # the slow way, only when something is unusual
    fill = _FILL[kind]
    cleaned = [fill if b else (int(v) if kind == "int" and v is not None else v)
               for v, b in zip(values, bad.tolist(), strict=True)]
    try:
        return np.array(cleaned, dtype=_DTYPES[kind]), bad, None
    except (OverflowError, ValueError, TypeError):
        return None, bad, np.ones(n, dtype=bool)


def _row_ok(kind: str, nullable: bool, v: Any) -> bool:
    """One value as `inputs.RecordChecker.check` judges it (what the typed decoder admits)."""
    if v is None:
        return nullable
    if v is MISSING or isinstance(v, bool) and kind != "bool":
        return False
    if kind == "int":
        return (isinstance(v, int) and _INT64[0] <= v <= _INT64[1]) or (
            isinstance(v, float) and v.is_integer() and _INT64[0] <= v <= _INT64[1])
    if kind == "float":
        try:
            return isinstance(v, int | float) and math.isfinite(float(v))
        except OverflowError:  # an integer beyond any float
            return False
    if kind == "bool":
        return isinstance(v, bool)
    return isinstance(v, str)


def _row_mask(kind: str, nullable: bool, values: list[Any]) -> np.ndarray:
    return np.fromiter((not _row_ok(kind, nullable, v) for v in values), bool, len(values))


#: Timestamp text -> its datetime64[ns] value, and text that does not parse -> _BAD or _DEFER:
#: parsed once per server, since requests repeat timestamps (hourly weather). Cleared when full.
_TIMES: dict[str, int] = {}
_MARKS: dict[str, str] = {}
_TIMES_MAX = 100_000
_BAD, _DEFER = "bad", "defer"
_NAT = np.iinfo(np.int64).min


def _timestamps(values: list[Any], nullable: bool
                ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """ISO-8601 text parsed once per distinct value, and remembered. Text that is not ISO-8601 but
    that pandas' general parser reads, and text with a UTC offset, is deferred."""
    n = len(values)
    distinct = {v for v in values if isinstance(v, str)}
    unknown = [v for v in distinct if v not in _TIMES and v not in _MARKS]
    if unknown:
        if len(_TIMES) + len(_MARKS) + len(unknown) > _TIMES_MAX:  # full: start again with this batch
            _TIMES.clear()
            _MARKS.clear()
            unknown = list(distinct)
        _learn(unknown)
    # every value text (str.__instancecheck__ is isinstance(v, str), without a Python loop)
    if len(distinct) and distinct <= _TIMES.keys() and all(map(str.__instancecheck__, values)):
        # the usual case: every value a known, valid timestamp
        ns = np.fromiter(map(_TIMES.__getitem__, values), np.int64, n)
        return ns.view("datetime64[ns]"), np.zeros(n, dtype=bool), None
    ns = np.full(n, _NAT, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    deferred = np.zeros(n, dtype=bool)
    for i, v in enumerate(values):
        if v is None:
            bad[i] = not nullable
        elif not isinstance(v, str):
            bad[i] = True
        elif v in _TIMES:
            ns[i] = _TIMES[v]
        else:
            bad[i] = _MARKS[v] == _BAD
            deferred[i] = not bad[i]
    return ns.view("datetime64[ns]"), bad, deferred if deferred.any() else None


def _learn(texts: list[str]) -> None:
    """Parse `texts` (ISO-8601, one pandas call) into the cache."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(pd.Index(texts, dtype=object), format="ISO8601", errors="coerce")
    except (ValueError, TypeError, OverflowError):  # e.g. offsets mixed with naive text
        parsed = None
    if parsed is None or getattr(parsed, "tz", None) is not None:
        for t in texts:
            _learn_one(t)
        return
    for t, v in zip(texts, parsed.asi8.tolist(), strict=True):
        if v == _NAT:
            _MARKS[t] = _DEFER if _reads_as_timestamp(t) else _BAD
        else:
            _TIMES[t] = v


def _learn_one(t: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = pd.to_datetime(pd.Index([t], dtype=object), format="ISO8601", errors="coerce")
    except (ValueError, TypeError, OverflowError):
        p = None
    if p is None or getattr(p, "tz", None) is not None or pd.isna(p[0]):
        # an offset (pandera's coercion converts it), or not ISO-8601: pandas' parser decides
        _MARKS[t] = _DEFER if p is not None and p.tz is not None or _reads_as_timestamp(t) else _BAD
    else:
        _TIMES[t] = int(p.asi8[0])


def _reads_as_timestamp(text: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return not pd.isna(pd.to_datetime(text))
    except (ValueError, TypeError, OverflowError):
        return False


def frame(arrays: dict[str, np.ndarray], columns: list[str]) -> pd.DataFrame:
    """The model's input, built once from the validated columns (no per-record objects)."""
    return pd.DataFrame({c: arrays[c] for c in columns}, copy=False)
