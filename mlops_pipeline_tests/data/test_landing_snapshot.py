"""`take_snapshot` streams the landing area one batch at a time when the batch index gives the id:
the same id as the whole-table definition, a stored file that hashes to it, the same findings, and
never more than one landed batch in memory."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_pipeline.data import snapshots, tables
from mlops_pipeline.data.batch_checks import check_batches
from mlops_pipeline.data.batch_index import CACHE_ROWS, clear_cache
from mlops_pipeline.data.contract import load_contract
from mlops_pipeline.data.landing_snapshot import take_snapshot
from mlops_pipeline.data.snapshots import (
    canonicalize,
    content_id,
    read_batches,
    read_landing,
    stored_content_id,
    time_range,
)
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.spec import PROJECT_ROOT, load_spec

KEYS = ["year", "month", "day", "sched_dep_time", "carrier", "flight", "origin"]


def split_landing(flights: pd.DataFrame, parts: int = 36, seed: int = 0,
                  time_column: str | None = "time_hour", null_text: bool = True) -> list[pd.DataFrame]:
    """A sample of the year cut into `parts` batches of random sizes, rows shuffled across them;
    the batch with the earliest rows has a text column that is all null (typed null in Parquet)."""
    rows = flights.sample(n=3000, random_state=seed).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(rows)), parts - 1, replace=False))
    bounds = [0, *cuts, len(rows)]
    batches = [rows.iloc[a:b].reset_index(drop=True) for a, b in zip(bounds, bounds[1:], strict=False)]
    first = min(range(parts), key=lambda i: batches[i]["time_hour"].min())
    if null_text:
        batches[first]["tailnum"] = None
    if time_column is None:
        batches = [b.drop(columns="time_hour") for b in batches]
    return batches


def land_batches(folder: Path, batches: list[pd.DataFrame], fmt: str = "parquet") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    # Names in an order unrelated to time, so time order and name order differ.
    for i, b in enumerate(batches):
        path = folder / f"part_{(i * 7) % len(batches):03d}.{fmt}"
        if fmt == "parquet":
            b.to_parquet(path, index=False, row_group_size=40)
        else:
            b.to_csv(path, index=False)
    return str(folder / f"*.{fmt}")


def expected_stored(pattern: str, spec, storage: Storage | None = None) -> pd.DataFrame:
    """The documented layout: each batch canonical and sorted by time and keys, batches by first
    timestamp then name (by name without a time column)."""
    batches = read_batches(pattern, spec.source.format, storage)
    order = [c for c in [spec.time_column, *spec.key_columns] if c]
    if spec.time_column:
        batches.sort(key=lambda b: (pd.to_datetime(b.frame[spec.time_column]).min(), b.name))
    chunks = [canonicalize(b.frame).sort_values(order, kind="stable") for b in batches]
    return pd.concat(chunks, ignore_index=True)


@pytest.fixture
def spec():
    return load_spec(PROJECT_ROOT / "data/configs/flights.yaml")


@pytest.fixture
def untimed_spec(tmp_path):
    doc = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    del doc["time_column"], doc["features"]["datetime_parts"]
    doc.update(name="flights_untimed", split={"holdout_fraction": 0.25, "seed": 5},
               contract=str(PROJECT_ROOT / doc["contract"]))
    config = tmp_path / "untimed.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_spec(config)


def _failing(found: dict) -> dict[str, list[str]]:
    return {k: [f.describe() for f in v] for k, v in found.items() if v}


def _whole_read(*args, **kwargs):
    raise AssertionError("the streaming path read the whole landing area")


def assert_streamed_snapshot(spec, storage: Storage, pattern: str) -> str:
    """The streamed snapshot against the whole-table definitions; returns its id."""
    clear_cache()
    with pytest.MonkeyPatch.context() as mp:  # the whole landing area is never read at once
        mp.setattr(snapshots, "read_batches", _whole_read)
        mp.setattr(snapshots, "read_landing", _whole_read)
        taken = take_snapshot(spec, storage, CACHE_ROWS)
    assert taken.id_from_landing is None and taken.created and taken.batches == 36
    whole = read_landing(pattern, spec.source.format, storage)
    assert taken.id == content_id(whole)
    stored = storage.read_snapshot(taken.id)
    assert content_id(stored) == taken.id
    assert stored_content_id(storage, taken.id, chunk_rows=37) == content_id(stored) == taken.id
    assert (taken.rows, taken.columns) == whole.shape
    if spec.time_column:
        assert (taken.time_start, taken.time_end) == time_range(whole, spec.time_column)
    else:
        assert (taken.time_start, taken.time_end) == ("", "")
    pd.testing.assert_frame_equal(stored, expected_stored(pattern, spec, storage))
    batches = read_batches(pattern, spec.source.format, storage)
    assert taken.findings == check_batches(batches, load_contract(spec), spec)
    return taken.id


def test_the_streamed_snapshot_has_the_whole_table_id_and_layout(tmp_path, flights, spec):
    storage = Storage(root=str(tmp_path))
    pattern = land_batches(tmp_path / "landing" / "flights", split_landing(flights))
    batches = read_batches(pattern, "parquet")
    assert all(str(b.frame["dep_time"].dtype) == "float64" for b in batches)
    assert 0 < sum(b.frame["dep_time"].isna().any() for b in batches) < len(batches)
    assert sum(b.frame["tailnum"].isna().all() for b in batches) == 1
    snapshot_id = assert_streamed_snapshot(spec, storage, pattern)
    again = take_snapshot(spec, storage, CACHE_ROWS)
    assert again.id == snapshot_id and not again.created and again.landing_read.startswith("skipped")


def test_without_a_time_column_batches_are_stored_by_name(tmp_path, flights, untimed_spec):
    storage = Storage(root=str(tmp_path))
    landed = split_landing(flights, seed=3, time_column=None)
    pattern = land_batches(tmp_path / "landing" / "flights", landed)
    assert untimed_spec.time_column is None
    assert_streamed_snapshot(untimed_spec, storage, pattern)


def test_streaming_holds_one_landed_batch_at_a_time(tmp_path, flights, spec, monkeypatch):
    storage = Storage(root=str(tmp_path))
    pattern = land_batches(tmp_path / "landing" / "flights", split_landing(flights, seed=1))
    clear_cache()
    from mlops_pipeline.data import batch_index

    batch_index.index_landing(pattern, "parquet", storage)  # the index exists, as after any run

    monkeypatch.setattr(snapshots, "read_batches", _whole_read)
    monkeypatch.setattr(snapshots, "read_landing", _whole_read)
    live: list[weakref.ref] = []
    most: list[int] = []
    real_read, real_canon = snapshots.read_batch, snapshots.canonicalize

    def counting_read(*args, **kwargs):
        gc.collect()
        most.append(sum(r() is not None for r in live))
        batch = real_read(*args, **kwargs)
        live.append(weakref.ref(batch.frame))
        return batch

    def counting_canon(df):
        out = real_canon(df)
        live.append(weakref.ref(out))
        return out

    monkeypatch.setattr(snapshots, "read_batch", counting_read)
    monkeypatch.setattr(snapshots, "canonicalize", counting_canon)
    taken = take_snapshot(spec, storage, CACHE_ROWS)
    assert taken.created and taken.id_from_landing is None
    assert len(most) == 36  # every batch read once, by the streaming pass
    # When a batch is read, at most the previous batch's chunk is still referenced (by the writer).
    assert max(most) <= 1
    monkeypatch.undo()
    assert stored_content_id(storage, taken.id) == taken.id == content_id(read_landing(pattern, "parquet"))


def test_a_stored_snapshot_is_not_written_again_but_its_batches_are_checked(tmp_path, flights, spec,
                                                                            monkeypatch):
    storage = Storage(root=str(tmp_path))
    pattern = land_batches(tmp_path / "landing" / "flights", split_landing(flights, seed=2))
    first = take_snapshot(spec, storage, CACHE_ROWS)
    for f in (tmp_path / "landing" / "flights" / ".index").glob("findings-*.json"):
        f.unlink()  # e.g. the contract changed: the files must be checked again, not rewritten

    def no_write(*args, **kwargs):
        raise AssertionError("a stored snapshot was produced again")

    monkeypatch.setattr(tables, "write_once", no_write)
    monkeypatch.setattr(snapshots, "canonicalize", no_write)
    again = take_snapshot(spec, storage, CACHE_ROWS)
    assert again.id == first.id and not again.created and again.landing_read == "36 batch(es)"
    assert again.findings == first.findings
    assert (again.time_start, again.time_end) == (first.time_start, first.time_end)
    monkeypatch.undo()
    assert _failing(again.findings) == _failing(check_batches(read_batches(pattern, "parquet"),
                                                              load_contract(spec), spec))


def test_csv_batches_are_streamed_too(tmp_path, flights, spec):
    storage = Storage(root=str(tmp_path))
    csv = spec.model_copy(update={"source": spec.source.model_copy(
        update={"path": "landing/flights/*.csv", "format": "csv"})})
    pattern = land_batches(tmp_path / "landing" / "flights",
                           split_landing(flights, seed=5, null_text=False), fmt="csv")
    assert_streamed_snapshot(csv, storage, pattern)
