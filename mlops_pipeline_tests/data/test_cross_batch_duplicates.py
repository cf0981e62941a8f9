"""A batch that repeats rows landed in earlier batches is caught on its own, naming the file, the
share and example keys (issue 24 item 5) — by key columns, else by whole-row hash."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from mlops_pipeline.data.batch_duplicates import CrossBatchDuplicates
from mlops_pipeline.data.batch_index import CACHE_ROWS, clear_cache
from mlops_pipeline.data.landing_snapshot import take_snapshot
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.spec import PROJECT_ROOT, DatasetSpec, load_spec

KEYS = ["year", "month", "day", "sched_dep_time", "carrier", "flight", "origin"]


def _write(folder: Path, name: str, df: pd.DataFrame, mtime: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    df.to_parquet(path, index=False)
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))  # landing order: by file time
    return path


def _month(flights: pd.DataFrame, month: int, n: int = 400) -> pd.DataFrame:
    rows = flights[flights["month"] == month].sample(n=n, random_state=month)
    return rows.sort_values(["time_hour", "carrier", "flight"]).reset_index(drop=True)


def test_a_batch_resending_landed_flights_is_blocked_naming_file_share_and_keys(tmp_path, flights):
    spec = load_spec(PROJECT_ROOT / "data/configs/flights.yaml")
    assert spec.key_columns == KEYS
    folder = tmp_path / "landing" / "flights"
    jan, feb = _month(flights, 1), _month(flights, 2)
    _write(folder, "flights_2013_01.parquet", jan, 1_700_000_000)
    _write(folder, "flights_2013_02.parquet", feb, 1_700_100_000)
    # A later file: 300 new March flights plus 100 January flights sent again (an upstream replay),
    # named so that it sorts first by name: landing order, not name order, decides what is earlier.
    resent = pd.concat([_month(flights, 3, 300), jan.head(100)], ignore_index=True)
    _write(folder, "a_resent.parquet", resent, 1_700_200_000)
    clear_cache()
    taken = take_snapshot(spec, Storage(root=str(tmp_path)), CACHE_ROWS)

    [found] = taken.findings["batch_duplicates"]
    assert found.batch == "a_resent.parquet"  # the later file, never the January one
    assert "100 of 400 rows (25.0%)" in found.message
    assert "flights_2013_01.parquet" in found.message
    first = "/".join(str(v) for v in jan.loc[0, KEYS])
    assert len(found.examples) == 3 and repr(first) in found.examples
    assert "a_resent.parquet" in found.describe() and "25.0%" in found.describe()
    # The same on the path that reads the whole landing area (batches whose dtypes differ).
    feb2 = feb.copy()
    feb2["dep_time"] = feb2["dep_time"].astype("Int64").astype(object).astype(str)
    _write(folder, "flights_2013_02.parquet", feb2, 1_700_100_000)
    clear_cache()
    again = take_snapshot(spec, Storage(root=str(tmp_path)), CACHE_ROWS)
    assert again.id_from_landing is not None
    [found2] = again.findings["batch_duplicates"]
    assert found2.batch == "a_resent.parquet" and "100 of 400 rows (25.0%)" in found2.message


def test_batches_without_overlap_pass(tmp_path, flights):
    spec = load_spec(PROJECT_ROOT / "data/configs/flights.yaml")
    folder = tmp_path / "landing" / "flights"
    for i, month in enumerate((1, 2)):
        _write(folder, f"flights_2013_{month:02d}.parquet", _month(flights, month), 1_700_000_000 + i)
    clear_cache()
    taken = take_snapshot(spec, Storage(root=str(tmp_path)), CACHE_ROWS)
    assert taken.findings["batch_duplicates"] == []


@pytest.mark.parametrize("repeated, blocked", [(5, False), (40, True)])
def test_without_keys_whole_rows_count_above_the_duplicate_share(repeated, blocked):
    spec = DatasetSpec.model_validate({
        "name": "toy", "task": "classification",
        "source": {"path": "landing/toy/*.parquet", "format": "parquet"},
        "target": {"name": "label"}, "features": {"numerical": ["x"]},
        "contract": "data/contracts/toy.yaml", "gate": {"roc_auc": {"floor": 0.5}},
        "checks": {"max_duplicate_share": 0.05},
    })
    first = pd.DataFrame({"x": range(200), "label": [0, 1] * 100})
    second = pd.DataFrame({"x": range(1000, 1200), "label": [1, 0] * 100})
    second.iloc[:repeated] = first.iloc[:repeated].to_numpy()
    frames = {"one.parquet": first, "two.parquet": second}
    dups = CrossBatchDuplicates(spec)
    dups.add("two.parquet", "two.parquet", second, pd.Timestamp("2026-01-02"))
    dups.add("one.parquet", "one.parquet", first, pd.Timestamp("2026-01-01"))
    found = dups.findings(lambda loc, cols: frames[loc])
    if not blocked:
        assert found == []
        return
    [f] = found
    assert f.batch == "two.parquet" and f.column is None
    assert f"{repeated} of 200 rows ({repeated / 200:.1%}) repeat entire rows" in f.message
    assert f.examples == ("row 0", "row 1", "row 2")


def test_each_repeat_is_charged_to_the_later_batch_and_names_where_it_landed_first():
    spec = DatasetSpec.model_validate({
        "name": "toy", "task": "classification",
        "source": {"path": "landing/toy/*.parquet", "format": "parquet"},
        "target": {"name": "label"}, "features": {"numerical": ["x"]}, "key_columns": ["id"],
        "contract": "data/contracts/toy.yaml", "gate": {"roc_auc": {"floor": 0.5}},
    })

    def frame(ids):
        return pd.DataFrame({"id": ids, "x": [0.5] * len(ids), "label": [0, 1] * (len(ids) // 2)})

    frames = {"a.parquet": frame(list(range(0, 10))),
              "b.parquet": frame([3, 3, *range(100, 108)]),  # a repeat within b only: not counted here
              "c.parquet": frame([1, 2, 100, *range(200, 207)])}
    frames["b.parquet"].loc[:1, "id"] = [300, 300]
    dups = CrossBatchDuplicates(spec)
    for day, name in enumerate(frames):
        dups.add(name, name, frames[name], pd.Timestamp("2026-01-01") + pd.Timedelta(days=day))
    [f] = dups.findings(lambda loc, cols: frames[loc][cols] if cols else frames[loc])
    assert f.batch == "c.parquet" and f.column == "id"
    assert "3 of 10 rows (30.0%)" in f.message and "(a.parquet, b.parquet)" in f.message
    assert f.examples == ("'1'", "'2'", "'100'")
