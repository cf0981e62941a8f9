"""Rows recognised by content across snapshots, and the trusted holdout the gate compares on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_pipeline.deployment.holdout import comparison_holdout, content_keys, new_rows, rows_in


def _frame(n: int, start: int = 0) -> pd.DataFrame:
    i = np.arange(start, start + n)
    return pd.DataFrame({
        "carrier": [f"C{k % 7}" for k in i],
        "distance": i * 10,  # int64
        "temp": i / 4.0,
        "time_hour": pd.Timestamp("2013-01-01") + pd.to_timedelta(i, unit="h"),
    })


def test_a_row_is_recognised_whatever_dtype_and_order_its_snapshot_stored_it_in():
    old = _frame(100)
    stored = old.sample(frac=1.0, random_state=1).reset_index(drop=True)
    stored["distance"] = stored["distance"].astype("float64")  # nulls elsewhere made it float
    stored["time_hour"] = stored["time_hour"].dt.tz_localize("UTC")
    stored["carrier"] = stored["carrier"].astype("category")
    assert rows_in(old, stored).all()
    assert set(content_keys(old, list(old.columns))) == set(content_keys(stored, list(old.columns)))
    changed = old.copy()
    changed.loc[3, "temp"] = 99.0
    assert rows_in(changed, stored).tolist() == [i != 3 for i in range(100)]


def test_new_rows_are_those_the_champion_snapshot_did_not_hold():
    champion_snapshot = _frame(100)
    current = pd.concat([_frame(100), _frame(30, start=100)], ignore_index=True)
    current["delayed"] = 1  # derived columns the snapshot lacks are ignored
    fresh = new_rows(current, champion_snapshot)
    assert len(fresh) == 30 and fresh["distance"].min() == 1000
    assert new_rows(_frame(100), champion_snapshot).empty  # one batch, already trained on: nothing new
    assert len(new_rows(_frame(5), champion_snapshot.iloc[0:0])) == 5


def test_the_comparison_leaves_out_rows_of_flagged_batches_and_counts_known_rows():
    holdout = pd.concat([_frame(40, start=80), _frame(20, start=500)], ignore_index=True)
    holdout["_split"] = "holdout"
    champion_snapshot = _frame(100)  # rows 80..99 were in it
    flagged = {"bad_batch.parquet": _frame(20, start=500)}

    result = comparison_holdout(holdout, champion_snapshot, flagged)

    assert result.holdout_rows == 60 and result.excluded_rows == 20 and result.compared_rows == 40
    assert result.known_rows == 20 and result.new_rows == 20
    assert not result.complete and result.flagged_batches == ("bad_batch.parquet",)
    assert result.frame["distance"].max() < 5000
    text = result.describe("3")
    assert "40 of 60" in text and "champion v3" in text and "bad_batch.parquet" in text


def test_without_flags_the_comparison_is_the_whole_holdout_and_empty_when_all_are_flagged():
    holdout = _frame(10)
    clean = comparison_holdout(holdout, None, {})
    assert clean.complete and clean.compared_rows == 10 and clean.known_rows == 0
    poisoned = comparison_holdout(holdout, None, {"all.parquet": _frame(10)})
    assert poisoned.compared_rows == 0 and poisoned.excluded_rows == 10
