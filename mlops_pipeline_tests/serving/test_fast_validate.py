"""The compiled validator (`serving/fast_validate.py`) accepts and refuses exactly the records the
pandera path refuses, on the flights contract and on a contract inferred from statsmodels'
`randhie` table — over a property-based corpus of valid and invalid records: wrong type, null
where not allowed, out of range, unseen category, missing field, extra field, NaN and Infinity,
integral floats for integers, unparseable timestamps. Served through a micro-batch, a batch the
compiled checks do not pass is decided and named by pandera: same errors, same frame."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
import statsmodels.api as sm
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_pipeline.data.contract import Domain, infer_contract, load_contract
from mlops_pipeline.serving.errors import RequestError
from mlops_pipeline.serving.fast_validate import MISSING
from mlops_pipeline.serving.inputs import RecordChecker, validate_batch, validate_micro_batch
from mlops_pipeline.spec import load_spec

#: Timestamps neither path reads (pandas' general parser included).
BAD_TIMES = ["not a time", "2013-02-30T05:00:00", "", "2013-13-01T00:00:00", "25:61"]


def _flights() -> RecordChecker:
    spec = load_spec()
    contract = load_contract(spec)
    return RecordChecker(contract.for_columns(spec.features.columns), spec.features.columns,
                         domain=contract.domain)


def _randhie() -> RecordChecker:
    """The contract `contract infer` drafts from the table itself (no review)."""
    spec = load_spec("data/configs/randhie.yaml")
    doc = infer_contract(sm.datasets.randhie.load_pandas().data.sample(2000, random_state=0), spec)
    schema = pa.DataFrameSchema.from_yaml(yaml.safe_dump(doc["schema"]))
    columns = spec.features.columns
    return RecordChecker(schema.select_columns(columns), columns, domain=Domain.from_doc(doc["domain"]))


CHECKERS = {"flights": _flights, "randhie": _randhie}


@pytest.fixture(scope="module", params=sorted(CHECKERS))
def checker(request) -> RecordChecker:
    return CHECKERS[request.param]()


def _bounds(checker: RecordChecker, col: str) -> tuple[float, float]:
    """What the contract admits for a number: its schema checks within the domain's range."""
    ranges = {r.column: (r.low, r.high) for r in checker.domain.rules if r.allowed is None}
    lo, hi = ranges.get(col, (-1e6, 1e6))
    for check in checker.schema.columns[col].checks:
        s = check.statistics
        lo = max(lo, s.get("min_value", lo) + (1 if check.name == "greater_than" else 0))
        hi = min(hi, s.get("max_value", hi))
    return lo, hi


@st.composite
def value(draw, checker: RecordChecker, col: str, kind: str, nullable: bool) -> Any:
    if nullable and draw(st.integers(0, 9)) == 0:
        return None
    if kind in ("int", "float"):
        lo, hi = _bounds(checker, col)
        if kind == "int":
            return draw(st.integers(int(np.ceil(lo)), int(np.floor(hi))))
        return draw(st.floats(lo, hi, allow_nan=False))
    if kind == "datetime":
        t = draw(st.datetimes(datetime(2013, 1, 1), datetime(2013, 12, 31)))
        return t.strftime(draw(st.sampled_from(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"])))
    allowed = next((r.allowed for r in checker.domain.rules if r.column == col and r.allowed), None)
    return draw(st.sampled_from(sorted(allowed))) if allowed else draw(st.text(max_size=5))


#: Each mutation and the column kinds it applies to.
APPLIES = {"none": lambda k: True, "wrong_type": lambda k: True, "null": lambda k: True,
           "out_of_range": lambda k: k in ("int", "float"), "unseen": lambda k: k == "str",
           "missing": lambda k: True, "extra": lambda k: True, "nan": lambda k: k in ("int", "float"),
           "inf": lambda k: k in ("int", "float"), "integral_float": lambda k: k == "int",
           "huge_int": lambda k: k == "int", "bad_time": lambda k: k == "datetime"}
MUTATIONS = ["none", "wrong_type", "null", "out_of_range", "unseen", "missing", "extra", "nan", "inf",
             "integral_float", "huge_int", "bad_time"]


@st.composite
def record(draw, checker: RecordChecker) -> dict[str, Any]:
    rec = {c: draw(value(checker, c, kind, nullable)) for c, kind, nullable in checker.fields}
    for _ in range(draw(st.integers(0, 2))):  # one record in three or so unmutated
        how = draw(st.sampled_from(MUTATIONS))
        fits = [f for f in checker.fields if APPLIES[how](f[1])]
        if not fits:
            continue
        col, kind, _ = draw(st.sampled_from(fits))
        numeric = kind in ("int", "float")
        if how == "wrong_type":
            rec[col] = draw(st.sampled_from(["7", True, [1], {"a": 1}] if numeric or kind == "datetime"
                                            else [7, 1.5, False]))
        elif how == "null":
            rec[col] = None
        elif how == "out_of_range" and numeric:
            lo, hi = _bounds(checker, col)
            rec[col] = draw(st.sampled_from([lo - 1, hi + 1, hi + 1e6, -1e9]))
            rec[col] = int(rec[col]) if kind == "int" else float(rec[col])
        elif how == "unseen" and kind == "str":
            rec[col] = "ZZ" + draw(st.text(max_size=3))
        elif how == "missing":
            rec.pop(col, None)
        elif how == "extra":
            rec["note_" + col] = draw(st.sampled_from(["x", 1, None]))
        elif how in ("nan", "inf") and numeric:
            rec[col] = float(how) * draw(st.sampled_from([1, -1]))
        elif how == "integral_float" and kind == "int" and isinstance(rec[col], int):
            rec[col] = float(rec[col])
        elif how == "huge_int" and kind == "int":
            rec[col] = draw(st.sampled_from([2**63, -(2**63) - 1, 1e30]))
        elif how == "bad_time" and kind == "datetime":
            rec[col] = draw(st.sampled_from(BAD_TIMES))
    return rec


def pandera_path(checker: RecordChecker, records: list[dict]) -> tuple[set[int], list, Any, list]:
    """Records refused today, each sent as its own request: the per-record checks of `parse`, the
    contract's pandera schema on a frame of the micro-batch (`validate_batch`), then the domain's
    `reject` rules on that frame. Also the parsed requests, the frame and each request's errors."""
    refused: set[int] = set()
    parts, owners = [], []
    for i, rec in enumerate(records):
        try:
            parts.append(checker.parse(json.dumps([rec]).encode(), 10)[0])
        except RequestError:
            refused.add(i)
            continue
        owners.append(i)
    X, errors = validate_batch(checker, parts) if parts else (None, [])
    refused |= {owners[k] for k, e in enumerate(errors) if e}
    passed = [owners[k] for k, e in enumerate(errors) if not e]
    if X is not None:
        for rule, hits in checker.domain.outside(X):
            if rule.policy == "reject":
                refused |= {passed[h] for h in hits.tolist()}
    return refused, parts, X, errors


def compiled_path(checker: RecordChecker, records: list[dict]) -> set[int]:
    """Records the compiled validator refuses, from the decoded columns (a missing field: MISSING)."""
    columns = {c: [r.get(c, MISSING) for r in records] for c in checker.columns}
    verdict = checker.fast.check(columns)
    assert not verdict.deferred.any()  # the corpus holds no timestamp left to pandas' parser
    assert verdict.arrays is not None
    refused = set(np.flatnonzero(verdict.bad).tolist())
    for rule, hits in checker.fast.outside(verdict.arrays):
        if rule.policy == "reject":
            refused |= set(hits.tolist())
    return refused


def served(checker: RecordChecker, parts: list, X_old: Any, errors_old: list) -> None:
    """The parsed requests through a micro-batch: the same errors, frame and domain hits as the
    pandera path; and each refused request alone (a batch the compiled checks pass is not
    validated by pandera: alone, a refused request must not pass them)."""
    X, _, errors, found = validate_micro_batch(checker, parts)
    assert errors == errors_old
    if X_old is None:
        assert X is None
        return
    pd.testing.assert_frame_equal(X, X_old)
    assert [(r.column, h.tolist()) for r, h in found] == [
        (r.column, h.tolist()) for r, h in checker.domain.outside(X_old)]
    for part, e in [(p, e) for p, e in zip(parts, errors_old, strict=True) if e][:2]:
        assert validate_micro_batch(checker, [part])[2] == [e]


def test_both_paths_refuse_the_same_records(checker):
    assert checker.fast.supported, checker.fast.why_not
    seen = {"refused": 0, "accepted": 0}

    @settings(max_examples=30, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(record(checker), min_size=6, max_size=12))
    def case(records):
        refused, parts, X, errors = pandera_path(checker, records)
        assert compiled_path(checker, records) == refused, records
        if parts:
            served(checker, parts, X, errors)
        seen["refused"] += len(refused)
        seen["accepted"] += len(records) - len(refused)

    case()
    assert seen["refused"] > 20 and seen["accepted"] > 20, seen  # the corpus holds both kinds


def test_a_timestamp_only_pandas_reads_is_left_to_pandera():
    """`01/05/2013 05:00` or an offset is not ISO-8601 as the fast path parses it: the batch takes
    the pandera path, which reads it as before."""
    checker = _flights()
    for text in ("01/05/2013 05:00", "2013-01-05T05:00:00Z"):
        parts = [checker.parse(json.dumps([{**_flights_good(), "time_hour": text}]).encode(), 10)[0]]
        verdict = checker.fast.check({c: checker.column(parts[0], c) for c in checker.columns})
        assert verdict.deferred.all() and not verdict.bad.any() and not verdict.clean
        X, _, errors, _ = validate_micro_batch(checker, parts)
        assert errors == [[]] and X["time_hour"].iloc[0] == pd.Timestamp("2013-01-05 05:00:00")


def _flights_good() -> dict[str, Any]:
    return {"carrier": "UA", "origin": "EWR", "dest": "IAH", "distance": 1400, "hour": 5, "month": 1,
            "temp": 39.0, "dewp": 28.0, "humid": 64.4, "wind_dir": 260.0, "wind_speed": 12.7,
            "wind_gust": None, "precip": 0.0, "pressure": 1011.9, "visib": 10.0,
            "time_hour": "2013-01-01T05:00:00"}


def test_one_bad_record_fails_alone_with_the_pandera_text():
    checker = _flights()
    good = _flights_good()
    parts = [checker.parse(json.dumps(p).encode(), 10)[0]
             for p in ([good], [good, {**good, "hour": 99}], [{**good, "month": 2}])]
    X, _, errors, _ = validate_micro_batch(checker, parts)
    assert errors == validate_batch(checker, parts)[1]
    assert errors[0] == [] and errors[2] == []
    [err] = errors[1]
    assert (err.record, err.field, err.error, err.value) == (
        1, "hour", "violates the contract: in_range(0, 23)", 99)
    assert list(X["month"]) == [1, 2]


def test_the_timestamp_cache_stays_bounded_and_right_when_it_fills(monkeypatch):
    """Timestamps are parsed once per server and remembered; a full cache starts again with the
    batch at hand, which is still judged whole."""
    from mlops_pipeline.serving import fast_validate

    monkeypatch.setattr(fast_validate, "_TIMES", {})
    monkeypatch.setattr(fast_validate, "_MARKS", {})
    monkeypatch.setattr(fast_validate, "_TIMES_MAX", 4)
    known = ["2013-01-01T05:00:00", "2013-01-01T06:00:00", "not a time"]
    fast_validate._timestamps(known, False)
    batch = ["2013-01-01T05:00:00", "2013-03-01T07:00:00", "2013-03-01T08:00:00", "not a time", None]
    arr, bad, deferred = fast_validate._timestamps(batch, False)
    assert len(fast_validate._TIMES) + len(fast_validate._MARKS) <= 4
    assert bad.tolist() == [False, False, False, True, True] and deferred is None
    assert arr[:3].tolist() == pd.to_datetime(batch[:3]).to_numpy().tolist()
