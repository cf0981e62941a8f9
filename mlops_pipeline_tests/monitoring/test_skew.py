"""Training/serving skew on three-row frames: types and unseen categories against training."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from mlops_pipeline.monitoring.skew import kind_of_values, training_serving_skew

SPEC = SimpleNamespace(features=SimpleNamespace(columns=["distance", "carrier", "sched"],
                                                categorical=["carrier"], datetime_parts=["sched"]))
TRAINING = pd.DataFrame({"distance": [100.0, 200.0, 300.0], "carrier": ["AA", "UA", "DL"],
                         "sched": ["2026-01-01 10:00"] * 3})


def test_production_sending_what_training_had_has_no_skew():
    production = pd.DataFrame({"distance": [120, 250, 80], "carrier": ["AA", "DL", "UA"],
                               "sched": ["2026-03-01 09:00", None, "2026-03-02 11:00"]})
    rows, problems = training_serving_skew(production, TRAINING, SPEC)
    assert problems == []
    assert [r["production"] for r in rows] == ["numeric", "string", "string"]


def test_a_number_sent_as_text_is_skew():
    production = TRAINING.assign(distance=["100 miles", "2", "3"])
    _, problems = training_serving_skew(production, TRAINING, SPEC)
    assert problems == ["column 'distance' arrives as string, trained as float64"]


def test_a_missing_column_and_mostly_unseen_categories_are_skew():
    production = pd.DataFrame({"distance": [1.0, 2.0, 3.0], "carrier": ["ZZ", "AA", "YY"],
                               "sched": ["2026-03-01"] * 3}).drop(columns="sched")
    rows, problems = training_serving_skew(production, TRAINING, SPEC)
    assert "column 'carrier': 66.7% of values never seen in training" in problems
    assert "column 'sched' is missing from production inputs" in problems
    assert rows[1]["unseen_share"] == 2 / 3


def test_kind_of_values_says_what_json_gave():
    assert kind_of_values(pd.Series([1, 2.5])) == "numeric"
    assert kind_of_values(pd.Series(["a", None])) == "string"
    assert kind_of_values(pd.Series([None, None], dtype=object)) == "empty"
