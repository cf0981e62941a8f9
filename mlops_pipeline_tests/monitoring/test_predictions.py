"""The prediction store: windows by time one row per record, request ids that name their record,
idempotent labels, and every task type round-tripping (string/bool/int classes, per-class
probabilities, labels in the dataset's own type)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import text

from mlops_pipeline.monitoring.predictions import (
    PredictionBatch,
    PredictionStore,
    new_batch_id,
    parse_request_id,
    request_ids,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def batch(n: int = 1, role: str = "champion", ts: datetime = T0, version: str = "1",
          batch_id: str | None = None) -> PredictionBatch:
    return PredictionBatch.from_records(
        [{"a": i, "t": "2013-01-01T05:00"} for i in range(n)], np.arange(n) % 2, np.linspace(0.1, 0.9, n),
        role=role, ts=ts, model_name="m", model_version=version, latency_ms=3.5, batch_id=batch_id)


@pytest.fixture()
def store(tmp_path):
    s = PredictionStore(f"sqlite:///{tmp_path / 'p.db'}")
    yield s
    s.close()


def test_string_classes_probabilities_and_labels_round_trip(store):
    classes = ("high", "low", "mid")
    matrix = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    multi = PredictionBatch.from_records([{"x": 1}, {"x": 2}], ["high", "mid"], matrix.max(axis=1),
                                         classes=classes, probabilities=matrix, model_version="2")
    binary = PredictionBatch.from_records([{"x": 3}], ["bad"], [0.8], classes=("bad", "good"),
                                          positive=0, model_version="1")
    boolean = PredictionBatch.from_records([{"x": 4}], [True], [0.9], classes=(False, True),
                                           positive=1, model_version="3")
    store.write([multi, binary, boolean])
    assert store.set_label(multi.request_ids[1], "mid") == (1, True)
    assert store.set_label(multi.request_ids[1], "mid") == (1, False)  # idempotent
    assert store.set_label(binary.request_ids[0], "good") == (1, True)
    assert store.set_label(boolean.request_ids[0], False) == (1, True)

    frame = store.read_window(probabilities=True).set_index("request_id")
    got = frame.loc[multi.request_ids]
    assert got["prediction"].tolist() == ["high", "mid"]
    assert got["probability"].tolist() == [0.7, 0.6]
    assert got["probabilities"].tolist() == [{"high": 0.7, "low": 0.2, "mid": 0.1},
                                             {"high": 0.1, "low": 0.3, "mid": 0.6}]
    assert got["label"].isna().tolist() == [True, False] and got["label"].iloc[1] == "mid"
    one = frame.loc[binary.request_ids[0]]
    assert one["prediction"] == "bad" and one["label"] == "good"
    assert one["probabilities"] == {"bad": 0.8, "good": pytest.approx(0.2)}
    flag = store.get(boolean.request_ids[0], probabilities=True).iloc[0]
    assert flag["prediction"] is True and flag["label"] is False
    assert flag["probabilities"] == {True: 0.9, False: pytest.approx(0.1)}


def test_a_numeric_binary_model_reads_back_as_floats_as_before(store):
    b = PredictionBatch.from_records([{"x": 1}, {"x": 2}], [1, 0], [0.9, 0.2], classes=(0, 1), positive=1)
    value = PredictionBatch.from_records([{"x": 3}], [12.5], None)  # regression: the value itself
    store.write([b, value])
    store.set_label(b.request_ids[0], 27.0)
    frame = store.read_window()
    assert frame["prediction"].dtype == np.float64 and frame["label"].dtype == np.float64
    assert sorted(frame["prediction"].tolist()) == [0.0, 1.0, 12.5]
    assert "probabilities" not in frame.columns


def test_a_store_from_before_classes_is_migrated(tmp_path):
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE prediction_batches (batch_id VARCHAR(32), role VARCHAR(16), ts DATETIME, "
        "model_name VARCHAR(200), model_version VARCHAR(32), records INTEGER, latency_ms FLOAT, "
        "features BLOB, features_size INTEGER, prediction BLOB, probability BLOB, "
        "PRIMARY KEY (batch_id, role));"
        "CREATE TABLE prediction_labels (batch_id VARCHAR(32), record INTEGER, label FLOAT, "
        "label_ts DATETIME, PRIMARY KEY (batch_id, record));")
    con.close()
    store = PredictionStore(f"sqlite:///{path}")
    try:
        b = PredictionBatch.from_records([{"x": 1}], ["b"], [0.6], classes=("a", "b"), positive=1)
        store.write([b])
        store.set_label(b.request_ids[0], "a")
        row = store.get(b.request_ids[0]).iloc[0]
        assert (row["prediction"], row["label"]) == ("b", "a")
    finally:
        store.close()


def test_store_is_wal_and_reads_windows_by_time_one_row_per_record(store):
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
    a = batch(2, ts=T0)
    later = [batch(1, ts=T0 + timedelta(days=1)), batch(3, "canary", T0 + timedelta(days=1, hours=23), "2")]
    assert store.write([a, PredictionBatch(a.batch_id, "shadow", T0, "m", "2", a.features, [0, 0], None, 1.0),
                        *later]) == 8
    day1 = store.read_window(T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=1))
    assert list(day1["request_id"]) == [a.request_ids[0]] * 2 + [a.request_ids[1]] * 2
    assert list(day1["role"]) == ["champion", "shadow"] * 2
    assert list(day1["model_version"]) == ["1", "2", "1", "2"]
    assert day1["probability"].isna().tolist() == [False, True, False, True]
    assert [json.loads(f)["a"] for f in day1["features"]] == [0, 0, 1, 1]
    day2 = store.read_window(T0.replace(hour=0) + timedelta(days=1), T0 + timedelta(days=2),
                             roles=["champion", "canary"], expand_features=True)
    assert list(day2["request_id"]) == later[0].request_ids + later[1].request_ids
    assert list(day2["a"]) == [0, 0, 1, 2] and "features" not in day2
    assert store.count() == 8 and store.count(["shadow"]) == 2 and store.count(["canary"]) == 3


def test_request_ids_name_their_batch_and_record_and_are_time_ordered_uuids():
    first, second = new_batch_id(), None
    while (second := new_batch_id())[:12] == first[:12]:  # the next millisecond
        pass
    ids = request_ids(first, 300)
    assert len(set(ids)) == 300 and all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids) and max(ids) < request_ids(second, 1)[0]  # by time, then by record
    assert [parse_request_id(i) for i in ids[:3]] == [(first, 0), (first, 1), (first, 2)]
    for bad in ("nope", "zz" * 16, first + "0", 42, ""):
        assert parse_request_id(bad) is None


def test_labels_are_idempotent_and_unknown_ids_match_nothing(store):
    a = batch(3)
    store.write([a, PredictionBatch(a.batch_id, "shadow", T0, "m", "2", a.features, [1, 1, 1], None, 1.0)])
    rid = a.request_ids[1]
    assert store.set_label(rid, 1.0) == (2, True)
    first = store.get(rid)["label_ts"].tolist()
    assert store.set_label(rid, 1.0) == (2, False)
    assert store.get(rid)["label_ts"].tolist() == first
    assert store.set_label(rid, 0.0) == (2, True)  # a corrected label replaces the old one
    assert store.get(rid)["label"].tolist() == [0.0, 0.0]  # on the served and the shadow answer
    assert store.read_window()["label"].notna().sum() == 2  # only that record is labelled
    assert store.set_label("zzz", 1.0) == (0, False)
    assert store.set_label(request_ids(a.batch_id, 4)[3], 1.0) == (0, False)  # past the batch's end
    assert store.set_label(request_ids(new_batch_id(), 1)[0], 1.0) == (0, False)
    assert store.get("zzz").empty and list(store.get("zzz").columns) == list(store.read_window().columns)
    b = batch(1)
    assert store.set_label(b.request_ids[0], 1.0) == (0, False)  # feedback before the capture: unknown
    store.write([b])
    store.set_label(b.request_ids[0], 1.0)
    late = PredictionBatch(b.batch_id, "shadow", T0, "m", "2", b.features, [0], None, 1.0)
    store.write([late])  # a shadow answer committed after the label arrived is labelled too
    assert store.get(b.request_ids[0])["label"].tolist() == [1.0, 1.0]


def test_store_package_imports_neither_mlflow_nor_sklearn_nor_dagster():
    code = ("import sys, mlops_pipeline.monitoring.predictions; "
            "print(json.dumps(sorted(m for m in ('mlflow', 'sklearn', 'dagster') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == []
