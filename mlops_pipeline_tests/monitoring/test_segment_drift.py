"""Input drift per segment (`monitoring.segment_drift`): THE drift function on each of the day's
largest segments, worst first; a segment's own column never counts, a column it stopped sending
does, and a segment the training data never held is said so."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_pipeline.monitoring.drift import compute_drift
from mlops_pipeline.monitoring.segment_drift import segment_drift
from mlops_pipeline.spec import load_spec
from mlops_pipeline_tests.segment_data import FLIGHTS


def _spec():
    spec = load_spec(FLIGHTS)
    return spec.model_copy(update={"segments": spec.segments.model_copy(
        update={"columns": ["origin"], "bins": {}, "min_rows": 50})})


def _frame(flights: pd.DataFrame, months, n: int, seed: int) -> pd.DataFrame:
    spec = _spec()
    rows = flights[flights["month"].isin(months)].sample(n, random_state=seed)
    out = rows[spec.features.columns].reset_index(drop=True)
    out["prediction"] = np.random.default_rng(seed).random(n)
    return out


def test_the_segment_whose_feed_died_is_worst_and_its_own_column_never_counts(flights):
    spec = _spec()
    reference, day = _frame(flights, [1, 2], 20000, 0), _frame(flights, [1, 2], 3000, 1)
    ewr = (day["origin"] == "EWR").to_numpy()
    for column in ("temp", "dewp", "humid", "pressure"):  # EWR's weather feed frozen
        day.loc[ewr, column] = day.loc[ewr, column].median()
    day.loc[ewr, "wind_gust"] = np.nan  # no longer sent
    day.loc[ewr, "hour"] = 12

    found = segment_drift(reference, day, spec)

    assert [d.segment for d in found][0] == "origin=EWR"
    worst = found[0]
    assert {"temp", "wind_gust", "hour"} <= set(worst.drifted_columns)
    assert "origin" not in worst.drifted_columns and "prediction" not in worst.drifted_columns
    assert worst.rows == int(ewr.sum()) and worst.reference_rows == int((reference["origin"] == "EWR").sum())
    others = [d for d in found if d.segment != "origin=EWR"]
    assert others and all(d.drift_share < worst.drift_share for d in others)
    assert worst.describe().startswith(f"segment origin=EWR ({worst.rows} rows): ")
    # The same function as the whole day's drift: its score for a column of the segment.
    whole = compute_drift(reference[reference["origin"] == "JFK"], day[day["origin"] == "JFK"],
                          ["carrier", "dest"], ["temp"], spec.drift, report=False)
    jfk = next(d for d in found if d.segment == "origin=JFK")
    assert ("temp" in jfk.drifted_columns) == next(c.drifted for c in whole.columns if c.column == "temp")
    assert whole.snapshot is None  # scores only: no HTML report per segment


def test_a_segment_the_training_data_never_held_is_named_first(flights):
    spec = _spec()
    reference, day = _frame(flights, [1], 2000, 0), _frame(flights, [1], 600, 2)
    reference = reference[reference["origin"] != "LGA"]
    found = segment_drift(reference, day, spec)
    assert found[0].segment == "origin=LGA" and found[0].drift_share is None
    assert "not in the training data" in found[0].describe()
    assert found[0].record()["drift_share"] is None
    # No segments, or a side without the segment column: nothing to say.
    assert segment_drift(reference, day.drop(columns=["origin"]), spec) == []
