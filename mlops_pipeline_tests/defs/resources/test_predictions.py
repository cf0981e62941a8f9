"""The prediction store round-trips every task type: string/bool/int classes, per-class
probabilities, and labels in the dataset's own type."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from mlops_pipeline.defs.resources.predictions import PredictionBatch, PredictionStore


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
