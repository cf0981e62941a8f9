"""Fast, process-free tests of the serving building blocks: the prediction store, request checks
against the real contract, the micro-batcher, group commit and canary routing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from mlops_pipeline.contract import load_contract
from mlops_pipeline.resources.predictions import PredictionRow, PredictionStore
from mlops_pipeline.serving.app import canary_bucket, canary_eligible
from mlops_pipeline.serving.batching import MicroBatcher
from mlops_pipeline.serving.capture import CaptureWriter
from mlops_pipeline.serving.inputs import RecordChecker, validate_batch
from mlops_pipeline.serving.loader import LoadedModel
from mlops_pipeline.settings import load_spec

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def row(rid: str, role: str = "champion", ts: datetime = T0, version: str = "1") -> PredictionRow:
    return PredictionRow(rid, role, ts, "batch", "m", version, {"a": 1, "t": "2013-01-01T05:00"},
                         1.0, 0.8, 3.5)


@pytest.fixture
def store(tmp_path: Path) -> PredictionStore:
    return PredictionStore(f"sqlite:///{tmp_path / 'p.db'}")


def test_store_is_wal_and_reads_windows_by_time(store):
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    store.write([row("a", ts=T0), row("a", "shadow", T0, "2"), row("b", ts=T0 + timedelta(days=1)),
                 row("c", "canary", T0 + timedelta(days=1, hours=23), "2")])
    day1 = store.read_window(T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=1))
    assert list(day1["request_id"]) == ["a", "a"] and set(day1["role"]) == {"champion", "shadow"}
    day2 = store.read_window(T0.replace(hour=0) + timedelta(days=1), T0 + timedelta(days=2),
                             roles=["champion", "canary"], expand_features=True)
    assert list(day2["request_id"]) == ["b", "c"]
    assert list(day2["a"]) == [1, 1] and "features" not in day2
    assert store.count() == 4 and store.count(["shadow"]) == 1


def test_labels_are_idempotent_and_unknown_ids_match_nothing(store):
    store.write([row("a"), row("a", "shadow", version="2")])
    assert store.set_label("a", 1.0) == (2, True)
    first = store.get("a")["label_ts"].tolist()
    assert store.set_label("a", 1.0) == (2, False)
    assert store.get("a")["label_ts"].tolist() == first
    assert store.set_label("a", 0.0) == (2, True)  # a corrected label replaces the old one
    assert set(store.get("a")["label"]) == {0.0}
    assert store.set_label("zzz", 1.0) == (0, False)
    store.write([row("a", "canary", version="3")])  # a row committed after the label arrived
    with store.engine.begin() as conn:
        assert store.inherit_labels(conn, ["a"]) == 1
    assert list(store.get("a")["label"]) == [0.0, 0.0, 0.0]


def test_store_module_imports_neither_mlflow_nor_sklearn():
    code = ("import sys, mlops_pipeline.resources.predictions; "
            "print(json.dumps(sorted(m for m in ('mlflow', 'sklearn') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == []


@pytest.fixture(scope="module")
def checker() -> RecordChecker:
    spec = load_spec()
    return RecordChecker(load_contract(spec).for_columns(spec.features.columns), spec.features.columns)


def good() -> dict:
    return {"carrier": "UA", "origin": "EWR", "dest": "IAH", "distance": 1400, "hour": 5, "month": 1,
            "temp": 39.0, "dewp": 28.0, "humid": 64.4, "wind_dir": 260.0, "wind_speed": 12.7,
            "wind_gust": None, "precip": 0, "pressure": 1011.9, "visib": 10.0,
            "time_hour": "2013-01-01T05:00:00"}


def test_captured_features_keep_the_key_fields_and_drop_other_extras():
    spec = load_spec()
    checker = RecordChecker(load_contract(spec).for_columns(spec.features.columns), spec.features.columns,
                            keep=spec.key_columns)
    record = {**good(), "year": 2013, "day": 1, "sched_dep_time": 515, "flight": 1545, "note": "x"}
    captured = checker.features(record)
    assert set(captured) == set(spec.features.columns) | {"year", "day", "sched_dep_time", "flight"}
    assert captured["flight"] == 1545 and "note" not in captured
    assert set(checker.features(good())) == set(spec.features.columns)  # keys are optional


def test_record_checks_name_record_and_field(checker):
    assert checker.check([good(), {**good(), "extra": "ignored"}], 10) == []
    bad = [good(), {**good(), "distance": "far", "carrier": None, "hour": 5.5}]
    del bad[1]["origin"]
    errors = {(e.record, e.field): e.error for e in checker.check(bad, 10)}
    assert errors == {(1, "origin"): "field required", (1, "distance"): "expected an integer",
                      (1, "carrier"): "must not be null", (1, "hour"): "expected an integer"}
    assert checker.check([], 10)[0].error.startswith("is empty")
    assert "limit is 1" in checker.check([good(), good()], 1)[0].error


def test_one_contract_validation_for_many_requests_blames_only_the_bad_one(checker):
    parts = [[good()], [good(), {**good(), "hour": 99}], [{**good(), "month": 2}]]
    frame, errors = validate_batch(checker, parts)
    assert errors[0] == [] and errors[2] == []
    assert [(e.record, e.field) for e in errors[1]] == [(1, "hour")]
    assert list(frame["month"]) == [1, 2]  # the two good requests, in order
    assert frame["time_hour"].dtype == "datetime64[ns]" and frame["distance"].dtype == "int64"
    frame, errors = validate_batch(checker, [[{**good(), "time_hour": "not a time"}], [good()]])
    assert errors[0] and errors[0][0].field == "time_hour" and errors[1] == [] and len(frame) == 1


def test_micro_batcher_bounds_batches_and_maps_results():
    calls: list[list[int]] = []

    def process(items: list[int]) -> list[object]:
        calls.append(items)
        return [ValueError("odd one") if i == 13 else i * 2 for i in items]

    async def run() -> list[object]:
        batcher = MicroBatcher(process, size=lambda i: 1, max_rows=8, max_wait=0.001)
        batcher.start()
        try:
            return await asyncio.gather(*[batcher.submit(i) for i in range(40)], return_exceptions=True)
        finally:
            await batcher.stop()

    results = asyncio.run(run())
    assert [r for i, r in enumerate(results) if i != 13] == [i * 2 for i in range(40) if i != 13]
    assert isinstance(results[13], ValueError)
    assert all(len(c) <= 8 for c in calls) and len(calls) < 40
    assert sorted(i for c in calls for i in c) == list(range(40))


def test_group_commit_acknowledges_after_commit_and_shares_commits(store):
    commits: list[int] = []
    writer = CaptureWriter(store, on_commit=lambda rows, _s: commits.append(rows))
    writer.start()

    async def run() -> None:
        await asyncio.gather(*[writer.write([row(f"r{i}")]) for i in range(200)])
        assert store.count() == 200  # every acknowledged write is committed
        with pytest.raises(IntegrityError):
            await writer.write([row("r0")])  # a failed commit is reported, never acknowledged

    try:
        asyncio.run(run())
    finally:
        writer.close()
    assert sum(commits) == 200 and len(commits) < 200


def test_canary_routing_is_sticky_uniform_and_gated():
    buckets = [canary_bucket(f"k{i}") for i in range(4000)]
    assert buckets[:10] == [canary_bucket(f"k{i}") for i in range(10)]
    assert abs(sum(b < 0.2 for b in buckets) / 4000 - 0.2) < 0.03
    model = LoadedModel("m", "2", object(), "classification", {"gate.status": "passed"})
    assert canary_eligible(model)
    assert not canary_eligible(LoadedModel("m", "2", object(), "classification", {"gate.status": "failed"}))
    assert not canary_eligible(None)
    assert pd.Series(buckets).between(0, 1).all()
