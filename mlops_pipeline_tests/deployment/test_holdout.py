"""Rows recognised by content across snapshots, and the trusted holdout the gate compares on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_pipeline.deployment.holdout import (
    ChampionRows,
    comparison_holdout,
    content_keys,
    identity_columns,
    new_rows,
    rows_in,
)


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


def _champion(snapshot: pd.DataFrame, trained: pd.DataFrame, columns: list[str]) -> ChampionRows:
    return ChampionRows(tuple(columns), np.unique(content_keys(snapshot, columns)),
                        np.unique(content_keys(trained, columns)))


def test_the_comparison_leaves_out_rows_of_flagged_batches_and_counts_known_rows():
    holdout = pd.concat([_frame(40, start=80), _frame(20, start=500)], ignore_index=True)
    holdout["_split"] = "holdout"
    columns = list(_frame(1).columns)
    champion = _champion(_frame(100), _frame(80), columns)  # rows 80..99 were its holdout
    flagged = {"bad_batch.parquet": _frame(20, start=500)}

    result = comparison_holdout(holdout, champion, flagged)

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


def test_rows_the_champion_trained_on_never_reach_the_comparison():
    """A backfill moved the time cutoff: part of the candidate's holdout was the champion's training
    split. Those rows are left out (recognised by the key columns, whatever else changed in them),
    counted apart from the flagged ones, and the rest is still compared."""
    columns = ["carrier", "distance"]  # the key columns
    holdout = _frame(60, start=70)
    holdout["temp"] += 0.5  # a corrected weather reading: the same flight all the same
    champion = _champion(_frame(100), _frame(90), columns)  # trained on 0..89, held out 90..99

    result = comparison_holdout(holdout, champion, {"late.parquet": holdout.tail(5)})

    assert result.champion_trained_rows == 20  # 70..89
    assert result.excluded_rows == 5 and result.compared_rows == 35
    assert result.frame["distance"].min() == 900  # nothing below row 90 is compared
    assert result.known_rows == 10 and result.new_rows == 25  # 90..99 were the champion's holdout
    assert not result.complete
    assert "20 rows champion v4 trained on left out" in result.describe("4")
    assert result.metadata == {"compared_rows": 35, "holdout_rows": 60,
                               "excluded_champion_trained_rows": 20, "excluded_flagged_rows": 5}
    everything = comparison_holdout(_frame(10), _champion(_frame(10), _frame(10), columns))
    assert everything.compared_rows == 0 and everything.champion_trained_rows == 10


def test_rows_are_recognised_by_key_columns_else_by_content():
    class Spec:
        key_columns = ["carrier", "distance"]

    prepared = ["carrier", "distance", "temp", "delayed", "_split", "_row"]
    assert identity_columns(Spec(), prepared) == ["carrier", "distance"]
    Spec.key_columns = ["flight"]  # a key column the table lacks: content it is
    assert identity_columns(Spec(), prepared) == ["carrier", "distance", "temp", "delayed"]
