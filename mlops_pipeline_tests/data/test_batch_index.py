"""The batch index derives the same snapshot id as the whole table, reading only new batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.data import batch_index
from mlops_pipeline.data.snapshots import content_id, read_landing


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "n": rng.integers(0, 5, n),
        "x": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n).round(2)),
        "s": pd.Series(rng.choice(["a", "b", "c"], n), dtype=object),
        "t": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="h"),
        "tz": (pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 50, n), unit="D")
               ).tz_localize("UTC").tz_convert("Europe/Paris"),
        "flag": rng.random(n) < 0.5,
    })
    df.loc[rng.random(n) < 0.1, "s"] = None
    return df


def _land(folder, frames, fmt="parquet", start=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames, start):
        path = folder / f"b{i:03d}.{fmt}"
        f.to_parquet(path, index=False) if fmt == "parquet" else f.to_csv(path, index=False)
    return str(folder / f"*.{fmt}")


def _split(df: pd.DataFrame, parts: int, seed: int) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(df)), parts - 1, replace=False))
    shuffled = df.sample(frac=1.0, random_state=seed)
    bounds = [0, *cuts, len(df)]
    return [shuffled.iloc[a:b].reset_index(drop=True) for a, b in zip(bounds, bounds[1:], strict=False)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_many_batches_in_any_order_with_duplicates_give_the_whole_table_id(tmp_path, seed):
    base = _frame(600, seed)
    df = pd.concat([base, base.iloc[:40], base.iloc[:5]], ignore_index=True)  # duplicated rows
    pattern = _land(tmp_path / "a", _split(df, 25, seed))
    index = batch_index.index_landing(pattern, "parquet")
    assert index.mismatch() is None
    assert index.snapshot_id() == content_id(read_landing(pattern, "parquet"))
    assert index.rows == len(df)
    # The same rows split and ordered otherwise: the same id, from the index alone.
    other = _land(tmp_path / "b", _split(df, 7, seed + 10))
    assert batch_index.index_landing(other, "parquet").snapshot_id() == index.snapshot_id()
    # One batch: the batch's own content id is the snapshot's.
    single = _land(tmp_path / "c", [df])
    entry = batch_index.index_landing(single, "parquet").entries[0]
    assert entry.content_id == content_id(df) == index.snapshot_id()


def test_csv_batches_take_the_fast_path_too(tmp_path):
    df = _frame(300, 5).drop(columns=["tz"])
    pattern = _land(tmp_path / "csv", _split(df, 12, 5), fmt="csv")
    cid, index = batch_index.landing_content_id(pattern, "csv")
    assert not index.stats.full_read and index.mismatch() is None
    assert cid == content_id(read_landing(pattern, "csv"))


def _fallback_case(tmp_path, frames, fmt="parquet"):
    pattern = _land(tmp_path / "land", frames, fmt=fmt)
    said: list[str] = []
    cid, index = batch_index.landing_content_id(pattern, fmt, log=said.append)
    assert index.snapshot_id() is None and index.stats.full_read
    assert said and "not the batch index" in said[0]
    assert cid == content_id(read_landing(pattern, fmt))
    return index, said[0]


def test_a_batch_lacking_a_column_falls_back_to_the_whole_table(tmp_path):
    parts = _split(_frame(200, 3), 6, 3)
    parts[2] = parts[2].drop(columns=["x"])
    index, said = _fallback_case(tmp_path, parts)
    assert "lacks column(s) x" in said and index.gaps() == {"b002.parquet": ["x"]}


def test_an_int_column_with_nulls_in_one_batch_falls_back(tmp_path):
    parts = _split(_frame(200, 4), 6, 4)
    # CSV: the batch with a null reads as float64, the others as int64; overall float64.
    parts[3].loc[0, "n"] = None
    _, said = _fallback_case(tmp_path, parts, fmt="csv")
    assert "column 'n'" in said


def test_nullable_ints_with_nulls_in_one_batch_fall_back(tmp_path):
    parts = [p.astype({"n": "Int64"}) for p in _split(_frame(200, 6), 5, 6)]
    parts[1].loc[0, "n"] = pd.NA  # Int64 everywhere as read; canonical float64 there, int64 elsewhere
    _, said = _fallback_case(tmp_path, parts)
    assert "column 'n'" in said


def test_numbers_sent_as_text_in_one_batch_fall_back(tmp_path):
    parts = _split(_frame(200, 7), 5, 7)
    parts[4]["n"] = parts[4]["n"].astype(str)
    _, said = _fallback_case(tmp_path, parts)
    assert "'n'" in said, said  # the text column is named


def test_categoricals_with_other_categories_fall_back(tmp_path):
    parts = _split(_frame(200, 8), 4, 8)
    for p in parts:
        p["s"] = p["s"].astype("category")
    parts[0]["s"] = parts[0]["s"].cat.add_categories(["zzz"])
    _, said = _fallback_case(tmp_path, parts)
    assert "'s'" in said, said  # the categorical column is named


def test_only_new_batches_are_read_and_rewritten_ones_are_read_again(tmp_path, monkeypatch):
    frames = _split(_frame(2000, 9), 11, 9)
    folder = tmp_path / "land"
    pattern = _land(folder, frames[:10])
    first = batch_index.index_landing(pattern, "parquet")
    assert len(first.stats.batches_read) == 10
    assert len(list((folder / ".index").glob("*.rowindex"))) == 10

    opened: list[str] = []
    real = pd.read_parquet
    monkeypatch.setattr(pd, "read_parquet", lambda p, *a, **k: (opened.append(str(p)), real(p, *a, **k))[1])
    again = batch_index.index_landing(pattern, "parquet")
    assert opened == [] and again.stats.batches_read == [] and again.stats.batch_bytes == 0
    assert again.snapshot_id() == first.snapshot_id()

    _land(folder, frames[10:], start=10)
    new = batch_index.index_landing(pattern, "parquet")
    assert opened == [str(folder / "b010.parquet")] and new.stats.batches_read == ["b010.parquet"]
    monkeypatch.setattr(pd, "read_parquet", real)
    assert new.snapshot_id() == content_id(read_landing(pattern, "parquet"))

    # A batch rewritten with other rows is indexed again, not trusted from its old entry.
    changed = frames[3].iloc[:-1]
    changed.to_parquet(folder / "b003.parquet", index=False)
    after = batch_index.index_landing(pattern, "parquet")
    assert after.stats.batches_read == ["b003.parquet"]
    assert after.snapshot_id() == content_id(read_landing(pattern, "parquet")) != new.snapshot_id()


def test_a_damaged_index_file_is_rebuilt(tmp_path):
    pattern = _land(tmp_path / "land", _split(_frame(100, 10), 3, 10))
    first = batch_index.index_landing(pattern, "parquet")
    assert first.snapshot_id()
    victim = sorted((tmp_path / "land" / ".index").glob("*.rowindex"))[1]
    victim.write_bytes(victim.read_bytes()[:-8])
    batch_index.clear_cache()  # a fresh process: index files are read
    again = batch_index.index_landing(pattern, "parquet")
    assert again.stats.batches_read == ["b001.parquet"] and again.snapshot_id() == first.snapshot_id()


_PERTURB = [
    lambda p: p.astype({"n": "int32"}),
    lambda p: p.astype({"x": "float32"}),
    lambda p: p.assign(x=np.nan),
    lambda p: p.assign(s=None),
    lambda p: p.astype({"n": "Int64"}),
    lambda p: p.astype({"s": "string"}),
    lambda p: p.assign(flag=p["flag"].astype(object).where(p.index > 0, None)),
    lambda p: p.assign(t=p["t"].dt.tz_localize("UTC")),
    lambda p: p.assign(tz=p["tz"].dt.tz_convert("UTC")),
    lambda p: p.iloc[:0],
    lambda p: p.drop(columns=["flag"]),
]


@pytest.mark.parametrize("seed", range(12))
def test_the_index_never_derives_an_id_the_whole_table_would_not(tmp_path, seed):
    """Random dtype changes in random batches: the index either derives the whole table's id or
    declines (and then the whole table gives it)."""
    rng = np.random.default_rng(seed)
    parts = _split(_frame(300, seed), 8, seed)
    for i in rng.choice(len(parts), 2, replace=False):
        parts[i] = _PERTURB[rng.integers(len(_PERTURB))](parts[i])
    pattern = _land(tmp_path / "land", parts)
    whole = content_id(read_landing(pattern, "parquet"))
    derived = batch_index.index_landing(pattern, "parquet").snapshot_id()
    assert derived in (None, whole)
    assert batch_index.landing_content_id(pattern, "parquet")[0] == whole


def test_a_long_lived_process_reads_neither_old_batches_nor_their_index_files(tmp_path):
    frames = _split(_frame(3000, 11), 13, 11)
    folder = tmp_path / "land"
    pattern = _land(folder, frames[:10])
    batch_index.index_landing(pattern, "parquet").snapshot_id()  # the previous tick
    _land(folder, frames[10:12], start=10)
    warm = batch_index.index_landing(pattern, "parquet")
    assert warm.prior is not None and warm.stats.index_bytes == 0
    assert warm.stats.batches_read == ["b010.parquet", "b011.parquet"]
    whole = content_id(read_landing(pattern, "parquet"))
    assert warm.snapshot_id() == whole and warm.snapshot_id() == whole  # twice: prior untouched

    batch_index.clear_cache()  # a fresh process reads every index file, reads no batch
    cold = batch_index.index_landing(pattern, "parquet")
    assert cold.prior is None and cold.stats.batches_read == [] and cold.stats.index_bytes > 0
    assert cold.snapshot_id() == whole

    (folder / "b004.parquet").unlink()  # a batch removed: the cache no longer covers the state
    gone = batch_index.index_landing(pattern, "parquet")
    assert gone.prior is None and gone.snapshot_id() == content_id(read_landing(pattern, "parquet"))
    _land(folder, frames[12:], start=12)
    more = batch_index.index_landing(pattern, "parquet")
    assert more.prior is not None and more.stats.batches_read == ["b012.parquet"]
    assert more.snapshot_id() == content_id(read_landing(pattern, "parquet"))
