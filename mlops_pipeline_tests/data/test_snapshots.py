"""A snapshot's id is a function of its content only."""

from __future__ import annotations

import pandas as pd
import pytest

from mlops_pipeline.data.snapshots import LandingError, content_id, missing_columns_by_batch, read_landing


@pytest.fixture
def frame(flights: pd.DataFrame) -> pd.DataFrame:
    return flights[flights["month"] == 1].head(3000).reset_index(drop=True)


def test_same_rows_same_id_whatever_the_order(frame):
    shuffled = frame.sample(frac=1.0, random_state=7)
    reordered_columns = shuffled[list(reversed(frame.columns))]
    assert content_id(frame) == content_id(shuffled) == content_id(reordered_columns)


def test_same_rows_same_id_whatever_the_file_split(frame, tmp_path):
    frame.iloc[:1000].to_parquet(tmp_path / "a.parquet", index=False)
    frame.iloc[1000:].to_parquet(tmp_path / "b.parquet", index=False)
    other = tmp_path / "other"
    other.mkdir()
    frame.iloc[:2500].to_parquet(other / "x.parquet", index=False, compression="gzip")
    frame.iloc[2500:].to_parquet(other / "y.parquet", index=False, row_group_size=100)
    first = read_landing(str(tmp_path / "*.parquet"), "parquet")
    second = read_landing(str(other / "*.parquet"), "parquet")
    assert content_id(first) == content_id(second) == content_id(frame)


def test_any_changed_value_row_or_dtype_changes_the_id(frame):
    base = content_id(frame)
    changed = frame.copy()
    changed.loc[17, "temp"] = changed.loc[17, "temp"] + 0.01
    assert content_id(changed) != base
    assert content_id(frame.iloc[:-1]) != base
    duplicated = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
    assert content_id(duplicated) != base
    as_float = frame.assign(distance=frame["distance"].astype("float64"))
    assert content_id(as_float) != base


def test_landing_errors_name_the_problem(tmp_path, frame):
    with pytest.raises(LandingError, match="no landed batches match"):
        read_landing(str(tmp_path / "*.parquet"), "parquet")
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    frame.drop(columns=["dest"]).to_parquet(tmp_path / "b.parquet", index=False)
    union = read_landing(str(tmp_path / "*.parquet"), "parquet")  # the contract judges the gap
    assert union["dest"].isna().sum() == len(frame)
    assert missing_columns_by_batch(str(tmp_path / "*.parquet"), "parquet") == {"b.parquet": ["dest"]}
    (tmp_path / "b.parquet").write_bytes(b"not parquet")
    with pytest.raises(LandingError, match=r"cannot read landed batch .*b\.parquet"):
        read_landing(str(tmp_path / "*.parquet"), "parquet")


def test_the_newest_batch_is_the_one_with_the_latest_timestamps_not_the_last_name(tmp_path, flights):
    from mlops_pipeline.data.snapshots import newest_batch

    flights[flights["month"] == 3].head(50).to_parquet(tmp_path / "a_march.parquet", index=False)
    flights[flights["month"] == 1].head(50).to_parquet(tmp_path / "z_january.parquet", index=False)
    name, batch = newest_batch(str(tmp_path / "*.parquet"), "parquet", "time_hour")
    assert name == "a_march.parquet" and (batch["month"] == 3).all() and len(batch) == 50
    with pytest.raises(LandingError, match="no landed batches match"):
        newest_batch(str(tmp_path / "*.csv"), "csv", "time_hour")


def test_without_a_time_column_the_newest_batch_is_the_last_landed(tmp_path, flights):
    import os

    from mlops_pipeline.data.snapshots import newest_batch

    flights[flights["month"] == 3].head(40).to_parquet(tmp_path / "a_late.parquet", index=False)
    flights[flights["month"] == 1].head(30).to_parquet(tmp_path / "z_early.parquet", index=False)
    os.utime(tmp_path / "z_early.parquet", ns=(1_000_000_000, 1_000_000_000))  # landed long ago
    name, batch = newest_batch(str(tmp_path / "*.parquet"), "parquet", None)
    assert name == "a_late.parquet" and len(batch) == 40
