"""Request body -> contract-typed records -> a contract-validated feature frame, with errors a
client can act on.

Two layers, both driven by the one data contract (nothing here lists a column or a type):
1. `RecordChecker.parse` (per request): a msgspec decoder typed from the contract parses the body
   and checks every record while parsing (every feature present, JSON type compatible with the
   contract dtype, null only where the contract allows it), several times faster than `json.loads`
   plus a Python check. Anything it refuses takes the slow path: `json.loads` and `check`, which
   name the record and field (pandera would coerce 1.5 to 1 silently and reports a wrong type as a
   column-level failure with no row), and which also admit what the fast decoder is strict about
   (1.0 for an integer). NaN and Infinity are refused like any non-JSON number: `null` is how a
   client sends a missing value.
2. `validate_batch` (per micro-batch, whatever its size): the contract's pandera schema
   validates the concatenated records of many requests at once (value checks such as ranges,
   datetime parsing). Fast path: layer 1 already guarantees the JSON types, so the columns are
   built directly in the contract dtypes and the schema runs without coercion. Anything unusual
   falls back to the schema's own coercion with lazy error collection, whose failures carry a row
   index that maps back to the request. Both paths run the same schema; the fast one only skips
   work that is a no-op. Then the contract's domain (`RecordChecker.domain`: ranges and allowed
   categories, each column with its policy) judges the validated frame (`scoring.Scorer`).
   Serving runs this only for a micro-batch the compiled checks (`RecordChecker.fast`,
   `fast_validate`) do not pass: they judge the batch's columns with numpy, and name nothing.
"""

from __future__ import annotations

import copy
import math
import operator
import re
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import pandas as pd

from mlops_pipeline.data.contract import ContractError, Domain, validate
from mlops_pipeline.data.domain import RecordDomain
from mlops_pipeline.serving.errors import FieldError, RequestError, loads
from mlops_pipeline.serving.fast_validate import FastValidator, frame

if TYPE_CHECKING:
    import pandera.pandas as pa

    from mlops_pipeline.data.domain import RecordRule


def _kind(dtype: Any) -> str:
    name = str(dtype).lower()
    if name.startswith(("int", "uint")):
        return "int"
    if name.startswith("float"):
        return "float"
    if name.startswith("bool"):
        return "bool"
    if name.startswith("datetime"):
        return "datetime"
    if name in ("object", "str", "string", "category"):
        return "str"
    return "any"


#: msgspec field types per contract kind; "datetime" stays a string (pandas parses the column).
_FIELD_TYPES: dict[str, Any] = {"int": int, "float": float, "bool": bool, "datetime": str, "str": str}


def _field_type(kind: str, nullable: bool) -> Any:
    base = _FIELD_TYPES.get(kind, Any)
    return base | None if nullable and base is not Any else base


_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "datetime": "an ISO-8601 timestamp string",
    "str": "a string",
}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "int":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "float":  # NaN and Infinity are not JSON numbers: null is how a value is missing
        return isinstance(value, int | float) and not isinstance(value, bool) and not (
            isinstance(value, float) and not math.isfinite(value)
        )
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("str", "datetime"):
        return isinstance(value, str)
    return True


def _unencodable(value: Any) -> bool:
    """True when a decoded value cannot be written back as UTF-8 JSON (a lone surrogate such as
    `"\\ud800"`, which JSON's escapes can spell but Unicode has no character for)."""
    try:
        _ENCODE(value)
    except (UnicodeEncodeError, msgspec.EncodeError, TypeError, ValueError):
        return True
    return False


_ENCODE = msgspec.json.Encoder().encode
#: Where a msgspec error points: "... - at `$[3].distance`" -> record 3, field distance.
_WHERE = re.compile(r"at `\$\[(\d+)\]\.([^`\[]+)`")


class RecordChecker:
    """Request parsing and per-record checks derived from the contract's feature columns.

    `fields` lists each feature as (column, kind, nullable), kind one of int, float, bool,
    datetime, str or any: what a JSON value must be for the contract to take it."""

    def __init__(self, schema: pa.DataFrameSchema, columns: list[str], keep: list[str] | None = None,
                 domain: Domain | None = None):
        self.schema = schema
        self.columns = list(columns)
        # The contract's ranges and allowed categories, compiled once: checked per micro-batch.
        self.domain = RecordDomain(domain or Domain(), self.columns)
        # Fields captured with the features when a client sends them (the dataset's key columns):
        # they let labelled feedback become a training batch. Never used for prediction.
        self.keep = [c for c in (keep or []) if c not in self.columns]
        missing = [c for c in self.columns if c not in schema.columns]
        if missing:
            raise ValueError(f"the contract does not define feature columns {missing}")
        self.fields = [
            (c, _kind(schema.columns[c].dtype), bool(schema.columns[c].nullable)) for c in self.columns
        ]
        # The same checks compiled once into numpy over a micro-batch's columns (the hot path).
        self.fast = FastValidator(schema, self.fields, self.domain)
        self.exact_schema = copy.deepcopy(schema)  # same columns and checks, no coercion
        self.exact_schema.coerce = False
        for column in self.exact_schema.columns.values():
            column.coerce = False
        # One record type: fields named f0.. / k0.. and renamed to the column names, so any column
        # name works; key fields are optional (UNSET is omitted when encoding), extras are ignored.
        names = {f"f{i}": c for i, c in enumerate(self.columns)}
        names.update({f"k{i}": c for i, c in enumerate(self.keep)})
        self._names = names
        self.record_type: type[msgspec.Struct] = msgspec.defstruct(
            "Record",
            [(f"f{i}", _field_type(kind, nullable)) for i, (_, kind, nullable) in enumerate(self.fields)]
            + [(f"k{i}", Any, msgspec.UNSET) for i in range(len(self.keep))],
            rename=names, gc=False,
        )
        payload = msgspec.defstruct("Payload", [("records", list[self.record_type]), ("key", Any, None)])
        self._decoder = msgspec.json.Decoder(payload | list[self.record_type])
        self._encoder = msgspec.json.Encoder()
        self._get = {c: operator.attrgetter(f"f{i}") for i, c in enumerate(self.columns)}

    def parse(self, body: bytes, max_records: int) -> tuple[list[Any], Any]:
        """The request's records (as `record_type`) and its routing key; RequestError otherwise."""
        try:
            payload = self._decoder.decode(body)
        except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
            records, key = self._parse_slowly(body, max_records)
        else:
            records, key = (payload, None) if isinstance(payload, list) else (payload.records, payload.key)
            errors = self._limits(records, max_records)
            if errors:
                raise RequestError(422, "request violates the data contract", errors)
        # Any escape may spell a lone surrogate (`\\ud800`), which has no UTF-8 form and could not
        # be stored. Searching for the one byte `\\` (memchr) is far cheaper than for `\\u`.
        if b"\\" in body:
            self._check_text(records, key)
        return records, key

    def _check_text(self, records: list[Any], key: Any) -> None:
        """Refuse, naming record and field, any value with no UTF-8 form (checked before scoring:
        otherwise it would fail at capture, after the model ran)."""
        errors = []
        if key is not None and _unencodable(key):
            errors.append(FieldError(None, "key", "is not valid Unicode (a lone UTF-16 surrogate)", key))
        if _unencodable(records):
            for i, rec in enumerate(records):
                for name, value in msgspec.structs.asdict(rec).items():
                    if value is not msgspec.UNSET and _unencodable(value):
                        column = self._names.get(name, name)
                        errors.append(FieldError(i, column, "is not valid Unicode (a lone UTF-16 "
                                                 "surrogate)", value))
                if len(errors) > 100:
                    break
        if errors:
            raise RequestError(422, "request violates the data contract", errors)

    def _parse_slowly(self, body: bytes, max_records: int) -> tuple[list[Any], Any]:
        payload = loads(body)
        records = payload.get("records") if isinstance(payload, dict) else payload
        errors = self.check(records, max_records)
        if errors:
            raise RequestError(422, "request violates the data contract", errors)
        try:
            typed = msgspec.convert(records, list[self.record_type], strict=False)
        except msgspec.ValidationError as exc:  # e.g. 1e30 for an integer: integral, but no int64
            where = _WHERE.search(str(exc))
            record, field = (int(where[1]), where[2]) if where else (None, None)
            raise RequestError(422, "request violates the data contract",
                               [FieldError(record, field, str(exc))]) from None
        return typed, payload.get("key") if isinstance(payload, dict) else None

    @staticmethod
    def _limits(records: Any, max_records: int) -> list[FieldError]:
        if not isinstance(records, list):
            return [FieldError(None, "records", "must be a list of objects")]
        if not records:
            return [FieldError(None, "records", "is empty: send at least one record")]
        if len(records) > max_records:
            return [FieldError(None, "records", f"has {len(records)} records; the limit is {max_records}")]
        return []

    def check(self, records: Any, max_records: int) -> list[FieldError]:
        """Per-record checks of decoded JSON (dicts), naming record and field."""
        errors = self._limits(records, max_records)
        if errors:
            return errors
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                errors.append(FieldError(i, None, "record must be a JSON object"))
                continue
            for col, kind, nullable in self.fields:
                if col not in rec:
                    errors.append(FieldError(i, col, "field required"))
                    continue
                value = rec[col]
                if value is None:
                    if not nullable:
                        errors.append(FieldError(i, col, "must not be null"))
                    continue
                if isinstance(value, float) and not math.isfinite(value) and kind in ("int", "float"):
                    errors.append(FieldError(i, col, f"expected {_EXPECTED[kind]}: NaN and Infinity are "
                                             "not JSON numbers; send null for a missing value", value))
                elif not _type_ok(kind, value):
                    errors.append(FieldError(i, col, f"expected {_EXPECTED[kind]}", value))
            if len(errors) > 100:
                break
        return errors

    def column(self, records: list[Any], col: str) -> list[Any]:
        return list(map(self._get[col], records))

    def frame(self, records: list[Any]) -> pd.DataFrame:
        """Column-wise construction: much cheaper than one DataFrame per record."""
        return pd.DataFrame({c: self.column(records, c) for c in self.columns})

    def typed_frame(self, records: list[Any]) -> pd.DataFrame:
        """Columns built straight in the contract dtypes (valid after `parse`); raises otherwise."""
        out: dict[str, Any] = {}
        for col, kind, _ in self.fields:
            values = self.column(records, col)
            if kind == "int":
                out[col] = np.array(values, dtype=np.int64)
            elif kind == "float":
                out[col] = np.array(values, dtype=np.float64)  # None -> NaN
            elif kind == "datetime":
                out[col] = _parse_timestamps(values)
            elif kind == "bool":
                out[col] = np.array(values, dtype=bool)
            else:
                out[col] = np.array(values, dtype=object)
        return pd.DataFrame(out)

    def features(self, record: Any) -> dict[str, Any]:
        """The feature values, plus the record's key fields when sent; other extra fields are
        neither used nor stored."""
        return msgspec.to_builtins(record)

    def features_json(self, records: list[Any]) -> bytes:
        """What the store keeps of a request: `[features(record), ...]` as one compact UTF-8 JSON
        array (NaN as null), encoded in one call."""
        return self._encoder.encode(records)


def _parse_timestamps(values: list[Any]) -> pd.DatetimeIndex:
    """`pd.to_datetime(values, format="ISO8601")`, parsing each distinct string once: requests
    repeat timestamps (hourly weather: a few hundred distinct values in 10k flights)."""
    codes, uniques = pd.factorize(np.array(values, dtype=object))
    return pd.to_datetime(uniques, format="ISO8601").take(codes, allow_fill=True, fill_value=pd.NaT)


def contract_errors(exc: ContractError, offset: int = 0) -> list[FieldError]:
    """The contract's failure cases as field errors, rows renumbered from `offset` (where the
    request starts in the micro-batch) so each names the request's own record."""
    cases = exc.failure_cases
    out = []
    for r in cases.itertuples(index=False):
        idx = r.index
        record = None if idx is None or (isinstance(idx, float) and math.isnan(idx)) else int(idx) - offset
        out.append(FieldError(record, None if r.column is None else str(r.column),
                              f"violates the contract: {r.check}", r.failure_case))
    return out


def validate_batch(
    checker: RecordChecker, parts: list[list[dict[str, Any]]]
) -> tuple[pd.DataFrame | None, list[list[FieldError]]]:
    """Validate several requests' records in one pandera call.

    Returns the coerced frame of the requests that passed (rows in request order) and each
    request's errors. When a failure cannot be pinned to a row, each request is validated on its
    own: the slow path only runs when something is wrong.
    """
    bounds = []
    start = 0
    for recs in parts:
        bounds.append((start, start + len(recs)))
        start += len(recs)
    allrecs = [r for recs in parts for r in recs]
    try:
        return checker.exact_schema.validate(checker.typed_frame(allrecs)), [[] for _ in parts]
    except Exception:  # noqa: BLE001 - anything unusual takes the slow path, which names errors
        pass
    frame = checker.frame(allrecs)
    errors: list[list[FieldError]] = [[] for _ in parts]
    try:
        return validate(frame, checker.schema), errors
    except ContractError as exc:
        cases = exc.failure_cases
        idx = cases["index"]
        if idx.isna().any() or len(parts) == 1:
            if len(parts) == 1:
                errors[0] = contract_errors(exc)
                return None, errors
            good: list[pd.DataFrame] = []
            for i, recs in enumerate(parts):
                v, e = validate_batch(checker, [recs])
                errors[i] = e[0]
                if v is not None:
                    good.append(v)
            return (pd.concat(good, ignore_index=True) if good else None), errors
        bad_rows = {int(i) for i in idx}
        keep = []
        for i, (lo, hi) in enumerate(bounds):
            mine = [k for k in bad_rows if lo <= k < hi]
            if mine:
                rows = cases[idx.astype("Int64").between(lo, hi - 1)]
                errors[i] = contract_errors(ContractError("", rows), offset=lo)
            else:
                keep.append(i)
        if not keep:
            return None, errors
        v, again = validate_batch(checker, [parts[i] for i in keep])
        for i, e in zip(keep, again, strict=True):
            errors[i] = e
        return v, errors


def validate_micro_batch(checker: RecordChecker, parts: list[list[Any]]
                         ) -> tuple[pd.DataFrame | None, dict[str, np.ndarray] | None, list[list[FieldError]],
                                    list[tuple[RecordRule, np.ndarray]] | None]:
    """The micro-batch `parts` (each request's typed records) against the contract.

    Hot path: the compiled checks pass every row, and the model's input is built once from the
    checked columns, with the domain's hits computed on them. Otherwise the pandera path
    (`validate_batch`) decides and names each bad record and field exactly as before.
    Returns (frame of the accepted requests' rows in order, its columns, each request's errors,
    the domain's hits over the frame: `FastValidator.outside`)."""
    fast = checker.fast
    if fast.supported:
        records = [r for recs in parts for r in recs]
        verdict = fast.check({c: checker.column(records, c) for c in checker.columns})
        if verdict.clean:
            assert verdict.arrays is not None
            return (frame(verdict.arrays, checker.columns), verdict.arrays, [[] for _ in parts],
                    fast.outside(verdict.arrays))
    X, errors = validate_batch(checker, parts)
    if X is None:
        return None, None, errors, None
    arrays = {c: X[c].to_numpy() for c in checker.columns}
    return X, arrays, errors, fast.outside(arrays)
