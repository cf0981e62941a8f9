"""Fast, process-free tests of the serving building blocks: the prediction store, request checks
against the real contract, the micro-batcher, group commit and canary routing."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.exc import IntegrityError

from mlops_pipeline.data.contract import load_contract
from mlops_pipeline.monitoring.predictions import PredictionBatch, PredictionStore, new_batch_id, request_ids
from mlops_pipeline.monitoring.predictions.store import _InsertPlan
from mlops_pipeline.serving.batching import MicroBatcher
from mlops_pipeline.serving.capture import CaptureWriter
from mlops_pipeline.serving.errors import RequestError
from mlops_pipeline.serving.inputs import RecordChecker, validate_batch
from mlops_pipeline.serving.loader import LoadedModel
from mlops_pipeline.serving.metrics import ServingMetrics
from mlops_pipeline.serving.responses import predictions_body
from mlops_pipeline.serving.scoring import canary_bucket, canary_eligible
from mlops_pipeline.spec import load_spec
from mlops_pipeline_tests.monitoring.test_predictions import T0, batch


@pytest.fixture
def store(tmp_path: Path) -> PredictionStore:
    return PredictionStore(f"sqlite:///{tmp_path / 'p.db'}")


@pytest.fixture(scope="module")
def checker() -> RecordChecker:
    spec = load_spec()
    return RecordChecker(load_contract(spec).for_columns(spec.features.columns), spec.features.columns)


def good() -> dict:
    return {"carrier": "UA", "origin": "EWR", "dest": "IAH", "distance": 1400, "hour": 5, "month": 1,
            "temp": 39.0, "dewp": 28.0, "humid": 64.4, "wind_dir": 260.0, "wind_speed": 12.7,
            "wind_gust": None, "precip": 0, "pressure": 1011.9, "visib": 10.0,
            "time_hour": "2013-01-01T05:00:00"}


def parse(checker: RecordChecker, records: list, max_records: int = 1000) -> list:
    return checker.parse(json.dumps(records).encode(), max_records)[0]


def test_captured_features_keep_the_key_fields_and_drop_other_extras():
    spec = load_spec()
    checker = RecordChecker(load_contract(spec).for_columns(spec.features.columns), spec.features.columns,
                            keep=spec.key_columns)
    record = {**good(), "year": 2013, "day": 1, "sched_dep_time": 515, "flight": 1545, "note": "x"}
    captured = checker.features(parse(checker, [record])[0])
    assert set(captured) == set(spec.features.columns) | {"year", "day", "sched_dep_time", "flight"}
    assert captured["flight"] == 1545 and "note" not in captured
    assert set(checker.features(parse(checker, [good()])[0])) == set(spec.features.columns)  # keys optional


def test_record_checks_name_record_and_field(checker):
    assert checker.check([good(), {**good(), "extra": "ignored"}], 10) == []
    bad = [good(), {**good(), "distance": "far", "carrier": None, "hour": 5.5}]
    del bad[1]["origin"]
    expected = {(1, "origin"): "field required", (1, "distance"): "expected an integer",
                (1, "carrier"): "must not be null", (1, "hour"): "expected an integer"}
    assert {(e.record, e.field): e.error for e in checker.check(bad, 10)} == expected
    with pytest.raises(RequestError) as refused:  # what a client gets: the same errors, 422
        parse(checker, bad)
    assert refused.value.status == 422
    assert {(e.record, e.field): e.error for e in refused.value.errors} == expected
    assert checker.check([], 10)[0].error.startswith("is empty")
    assert "limit is 1" in checker.check([good(), good()], 1)[0].error
    for body, status in [(b"[]", 422), (json.dumps([good()] * 2).encode(), 422), (b"{not json", 400),
                         (b'{"records": 3}', 422)]:
        with pytest.raises(RequestError) as refused:
            checker.parse(body, 1)
        assert refused.value.status == status


def test_one_contract_validation_for_many_requests_blames_only_the_bad_one(checker):
    parts = [[good()], [good(), {**good(), "hour": 99}], [{**good(), "month": 2}]]
    frame, errors = validate_batch(checker, [parse(checker, p) for p in parts])
    assert errors[0] == [] and errors[2] == []
    assert [(e.record, e.field) for e in errors[1]] == [(1, "hour")]
    assert list(frame["month"]) == [1, 2]  # the two good requests, in order
    assert frame["time_hour"].dtype == "datetime64[ns]" and frame["distance"].dtype == "int64"
    parts = [[{**good(), "time_hour": "not a time"}], [good()]]
    frame, errors = validate_batch(checker, [parse(checker, p) for p in parts])
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

    batches = [batch() for _ in range(200)]

    async def run() -> None:
        await asyncio.gather(*[writer.write([b]) for b in batches])
        assert store.count() == 200  # every acknowledged write is committed
        with pytest.raises(IntegrityError):
            await writer.write([batches[0]])  # a failed commit is reported, never acknowledged

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


# ---- the bulk paths of large requests: each must equal the per-record path it replaces ---------

def tricky_records(n: int = 300) -> list[dict]:
    """Repeated values (the memoised path), all-distinct floats, an integral float in an int
    column, strings holding the JSON item separators, non-ASCII, nulls and key fields."""
    out = []
    for i in range(n):
        rec = {**good(), "temp": 20.0 + i / 7, "wind_gust": None if i % 3 else 25.3 + i,
               "dest": ["IAH", "a, b", 'q"},{"x', "Zürich"][i % 4], "distance": 1400.0 if i % 5 else 1400}
        if i % 50 == 0:
            rec.update({"flight": 1545 + i, "year": 2013})
        out.append(rec)
    return out


def test_fast_parse_equals_the_checked_slow_path_and_stores_the_features():
    """The typed decoder and `json.loads` + `check` + conversion (the path for anything the decoder
    refuses) give the same records; the stored features are the record's features and keys."""
    spec = load_spec()
    checker = RecordChecker(load_contract(spec).for_columns(spec.features.columns), spec.features.columns,
                            keep=spec.key_columns)
    records = tricky_records()
    strict = [{**r, "distance": int(r["distance"])} for r in records]
    fast = checker.parse(json.dumps({"records": strict, "key": "k1"}).encode(), 1000)
    slow = checker.parse(json.dumps({"records": records, "key": "k1"}).encode(), 1000)  # 1400.0: slow
    assert fast == slow and fast[1] == "k1"
    assert all(type(r.f3) is int for r in slow[0])  # distance, an int64 column, arrives as int
    stored = json.loads(checker.features_json(fast[0]))
    assert stored == [{k: v for k, v in r.items() if k in checker.columns or k in checker.keep}
                      for r in strict]
    assert stored[0]["flight"] == 1545 and "flight" not in stored[1]
    missing = checker.parse(json.dumps([{**good(), "temp": None}]).encode(), 10)[0]
    assert json.loads(checker.features_json(missing))[0]["temp"] is None  # null: the missing value
    with pytest.raises(RequestError) as nan:  # NaN is no JSON number: refused like Infinity
        checker.parse(json.dumps([{**good(), "temp": float("nan")}]).encode(), 10)
    assert [(e.field, "send null" in e.error) for e in nan.value.errors] == [("temp", True)]


def test_refused_requests_name_every_bad_record_and_field(checker):
    records = tricky_records(200)
    bad = [{k: v for k, v in r.items() if k in checker.columns} for r in records]
    bad[150]["hour"] = 5.5
    bad[170]["temp"] = float("inf")
    del bad[199]["origin"]
    with pytest.raises(RequestError) as refused:
        parse(checker, bad)
    assert {(e.record, e.field) for e in refused.value.errors} == {(150, "hour"), (170, "temp"),
                                                                    (199, "origin")}
    with pytest.raises(RequestError) as refused:
        parse(checker, [*bad[:100], "not a record"])
    assert refused.value.errors[0].record == 100


def test_a_captured_batch_reads_back_as_its_records_through_every_insert_path(tmp_path: Path):
    """The multi-row SQLite statement (the server's path) and SQLAlchemy's generic insert (other
    databases) store the same thing, and reading gives back every record exactly."""
    records = [{k: v for k, v in r.items()} for r in tricky_records(120)]
    pred, proba = np.arange(120) % 2, np.linspace(0, 1, 120)
    proba[7] = np.nan
    bid = new_batch_id()
    batches = [PredictionBatch.from_records(records, pred, proba, ts=T0, model_name="m", batch_id=bid,
                                            latency_ms=12.5),
               PredictionBatch.from_records(records, pred[::-1], None, role="shadow", ts=T0, model_name="m",
                                            model_version="2", batch_id=bid, latency_ms=3.0)]
    fast, generic = (PredictionStore(f"sqlite:///{tmp_path / name}.db") for name in ("fast", "generic"))
    generic._insert_plan = _InsertPlan("", "sqlalchemy", generic._plan().processors)
    assert fast.write(batches) == generic.write(batches) == 240
    frame = fast.read_window(expand_features=True)
    pd.testing.assert_frame_equal(frame, generic.read_window(expand_features=True))
    served = frame[frame["role"] == "champion"].reset_index(drop=True)
    assert list(served["request_id"]) == request_ids(bid, 120)
    assert served["prediction"].tolist() == pred.astype(float).tolist()
    np.testing.assert_array_equal(served["probability"], proba)  # NaN stays NaN
    assert (served["latency_ms"] == 12.5).all() and set(served["model_version"]) == {"1"}
    expected = pd.DataFrame(records)
    pd.testing.assert_frame_equal(served[list(expected.columns)], expected, check_dtype=False)
    shadow = frame[frame["role"] == "shadow"]
    assert shadow["probability"].isna().all() and shadow["prediction"].tolist() == pred[::-1].tolist()
    with pytest.raises(IntegrityError):  # a duplicate is refused as through SQLAlchemy
        fast.write(batches[:1])


def test_response_body_is_the_records_answers_in_order():
    head = {"model_name": "m", "model_version": "1", "role": "champion", "batch_id": "b"}
    ids = request_ids(new_batch_id(), 50)
    for pred, proba in [(np.arange(50) % 2, np.linspace(0, 1, 50)), (np.linspace(3, 9, 50), None),
                        (np.array(["yes", "a, b"] * 25, dtype=object), np.full(50, 0.5))]:
        items = [{"request_id": r, "prediction": p.item() if isinstance(p, np.generic) else p,
                  **({} if proba is None else {"probability": float(proba[k])})}
                 for k, (r, p) in enumerate(zip(ids, pred, strict=True))]
        assert json.loads(predictions_body(head, ids, pred, proba)) == {**head, "predictions": items}


def test_bulk_histogram_observation_equals_one_by_one():
    one, bulk = ServingMetrics(), ServingMetrics()
    values = np.concatenate([np.linspace(0, 1, 500), [0.1, 0.2, 1.0, 5.0]])
    for v in values:
        one.probability.labels("champion").observe(float(v))
    ServingMetrics.observe_many(bulk.probability.labels("champion"), values)

    def samples(m: ServingMetrics) -> dict:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in m.registry.collect()
                for s in f.samples if not s.name.endswith("_created")}

    a, b = samples(one), samples(bulk)
    assert a.keys() == b.keys()
    assert all(a[k] == pytest.approx(b[k], rel=1e-12) for k in a)


def test_workers_of_one_server_see_each_others_reload_asks_and_status(tmp_path: Path):
    from mlops_pipeline.serving.workers import WorkerGroup

    a, b = WorkerGroup(tmp_path, pid=os.getpid()), WorkerGroup(tmp_path, pid=os.getppid())
    assert not a.reload_requested() and not b.reload_requested()
    asked = a.request_reload()
    assert b.reload_requested() and not b.reload_requested()  # once per ask
    assert not a.reload_requested()  # the asking worker polls on its own
    assert not a.wait_polled_since(asked, timeout=0.1)  # nobody has polled since
    a.publish("2", None, asked + 0.01)
    b.publish("1", None, asked - 1.0)
    assert sorted(s["champion_version"] for s in a.statuses()) == ["1", "2"]
    assert not a.wait_polled_since(asked, timeout=0.1)  # b has not polled since the ask
    b.publish("2", None, asked + 0.02)
    assert a.wait_polled_since(asked, timeout=1.0)
    dead = WorkerGroup(tmp_path, pid=2**22 + 12345)  # no such process
    dead.publish("1", None, 0.0)
    assert {s["pid"] for s in a.statuses()} == {os.getpid(), os.getppid()}  # a dead worker is ignored
    b.leave()
    assert {s["pid"] for s in a.statuses()} == {os.getpid()}


def test_worker_sockets_share_a_port_but_never_one_another_server_holds():
    import socket

    from mlops_pipeline.serving.workers import PortInUse, _socket, _worker_socket, check_port_free

    probe = _socket("127.0.0.1", 0, reuse_port=False)
    port = probe.getsockname()[1]
    probe.close()
    check_port_free("127.0.0.1", port)
    sockets = [_worker_socket("127.0.0.1", port) for _ in range(3)]  # one per worker, one port
    try:
        assert {s.getsockname()[1] for s in sockets} == {port}
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in sockets)
        with pytest.raises(ConnectionRefusedError):  # none listens until its worker is ready
            socket.create_connection(("127.0.0.1", port), timeout=2)
        sockets[0].listen()
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # the ready one answers
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use"):
            check_port_free("127.0.0.1", port)  # a second server is refused, not merged in
    finally:
        for s in sockets:
            s.close()
