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


def _stored(tmp_path, table, row_group_size: int):
    """A Parquet file (a frame, or an Arrow table written without pandas metadata) stored as if
    it were snapshot ff...f."""
    import pyarrow.parquet as pq

    from mlops_pipeline.data.storage import Storage

    storage = Storage(root=str(tmp_path))
    path = storage.snapshot_path("f" * 64)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(table, pd.DataFrame):
        table.to_parquet(path, index=False, row_group_size=row_group_size)
    else:
        pq.write_table(table, path, row_group_size=row_group_size)
    return storage, "f" * 64


def test_the_stored_content_id_streamed_in_chunks_is_the_whole_tables(tmp_path):
    import numpy as np

    from mlops_pipeline.data.snapshots import canonicalize, stored_content_id

    rng = np.random.default_rng(0)
    n = 200
    df = canonicalize(pd.DataFrame({
        "k": rng.integers(0, 9, n),
        "x": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),
        "s": [None] * 50 + list(rng.choice(["a", "b"], n - 50)),  # the first chunks: all null
        "t": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 99, n), unit="h"),
        "u": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 9, n), unit="D"),
        "b": rng.random(n) < 0.5,
    }))
    storage, sid = _stored(tmp_path, df, 20)
    whole = content_id(storage.read_snapshot(sid))
    assert whole == content_id(df)
    for chunk_rows in (7, 20, 50, 1000):
        assert stored_content_id(storage, sid, chunk_rows=chunk_rows) == whole


def test_an_altered_file_hashes_as_the_whole_table_even_when_its_chunks_disagree(tmp_path):
    """Integers or booleans with nulls in some chunks only (no snapshot written by the pipeline has
    them): pandas reads the whole column as float / object, and so must the streamed id."""
    import pyarrow as pa

    from mlops_pipeline.data.snapshots import stored_content_id

    table = pa.table({"i": pa.array([1, 2, 3, 4, None, 6], pa.int64()),
                      "b": pa.array([True, False, True, True, False, None], pa.bool_()),
                      "s": ["a", "b", "c", "d", "e", "f"]})
    storage, sid = _stored(tmp_path, table, 2)
    read = storage.read_snapshot(sid)
    assert [str(t) for t in read.dtypes] == ["float64", "object", "object"]
    whole = content_id(read)
    assert stored_content_id(storage, sid, chunk_rows=2) == whole
    assert stored_content_id(storage, sid, chunk_rows=6) == whole
    with pytest.raises(FileNotFoundError, match="snapshot 0+ not found"):
        stored_content_id(storage, "0" * 64)
