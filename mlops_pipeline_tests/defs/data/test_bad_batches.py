"""The catalogue of bad batches: after a clean run, each kind of poisoned or broken batch is landed
and the loop must block it by name (batch file and column), leave the champion where it was, keep
every earlier snapshot byte-identical and write nothing half-way.

One clean run (Jan-Feb 2013, ~12% sample) is shared by the module; each case copies its state.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops_pipeline.data.landing import land_months
from mlops_pipeline.data.snapshots import content_id
from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.deployment.tags import CHAMPION
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline_tests.conftest import SAMPLE, check_results, materialized

pytestmark = pytest.mark.slow

BAD = "flights_2013_03.parquet"  # the bad batch's file name, which every verdict must name
MODEL = "flights_delay"


def _march(flights: pd.DataFrame) -> pd.DataFrame:
    march = flights[flights["month"] == 3].sample(frac=SAMPLE, random_state=3)
    return march.sort_values(["time_hour", "carrier", "flight"]).reset_index(drop=True)


def _rows(df: pd.DataFrame, share: float) -> pd.Index:
    return df.sample(frac=share, random_state=0).index


def unseen_categories(df):
    idx = _rows(df, 0.3)
    df.loc[idx, "carrier"] = "ZZ"
    df.loc[idx, "dest"] = "XXX"
    return df


def impossible_weather(df):
    df.loc[_rows(df, 0.05), "temp"] = 999.0
    df.loc[_rows(df, 0.05), "humid"] = -50.0
    df.loc[_rows(df, 0.05), "wind_speed"] = 1e6
    return df


def twenty_years_ahead(df):
    df["time_hour"] = df["time_hour"] + pd.DateOffset(years=20)
    return df


def sixty_percent_nulls(df):
    df.loc[_rows(df, 0.6), "temp"] = np.nan
    return df


def nullable_column_missing(df):
    return df.drop(columns=["visib"])


def numeric_strings(df):
    df["distance"] = df["distance"].astype(str)  # "273"
    return df


def one_class_only(df):
    df["arr_delay"] = 60.0  # every flight late
    return df


def duplicated_rows(df):
    return pd.concat([df, df.head(len(df) // 2)], ignore_index=True)


def wrong_dtype(df):
    df["distance"] = df["distance"].astype(str) + " miles"
    return df


def out_of_range_distance(df):
    df.loc[_rows(df, 0.05), "distance"] = -5
    return df


def wind_in_m_per_s(df):
    df["wind_speed"] = df["wind_speed"] * 0.447  # mph -> m/s: every value still inside the range
    return df


def extra_columns(df):
    df["surprise"] = 1
    return df


def _write(df: pd.DataFrame, path: Path) -> None:
    df.to_parquet(path, index=False)


def _beyond_2262(df: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    times = pa.array(
        [pd.Timestamp("2300-01-01").to_pydatetime()] * len(df), type=pa.timestamp("us")
    )
    pq.write_table(table.set_column(table.schema.get_field_index("time_hour"), "time_hour", times), path)


def _empty_file(df: pd.DataFrame, path: Path) -> None:
    path.write_bytes(b"")


def _truncated(df: pd.DataFrame, path: Path) -> None:
    _write(df, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _wrong_encoding(df: pd.DataFrame, path: Path) -> None:
    path.write_bytes(df.head(100).to_csv(index=False).encode("utf-16"))


# (id, change to the frame, how it is written, the check that blocks it or None for "the snapshot
# step fails", text the verdict must name besides the batch file)
CASES = [
    ("unseen-categories", unseen_categories, _write, "batch_unseen_categories", "carrier"),
    ("impossible-weather", impossible_weather, _write, "batch_out_of_range", "temp"),
    ("20-years-ahead", twenty_years_ahead, _write, "batch_time_window", "time_hour"),
    ("future-timestamps", twenty_years_ahead, _write, "batch_future_timestamps", "time_hour"),
    ("year-2300", None, _beyond_2262, None, "time_hour"),
    ("60pct-nulls", sixty_percent_nulls, _write, "batch_null_rates", "temp"),
    ("nullable-column-missing", nullable_column_missing, _write, "batch_columns", "visib"),
    ("numeric-strings", numeric_strings, _write, "batch_dtypes", "distance"),
    ("one-class", one_class_only, _write, "batch_class_balance", "delayed"),
    ("duplicated-rows", duplicated_rows, _write, "batch_duplicates", "flight"),
    ("wrong-dtype", wrong_dtype, _write, "batch_dtypes", "distance"),
    ("out-of-range-distance", out_of_range_distance, _write, "batch_out_of_range", "distance"),
    ("empty-file", None, _empty_file, None, ""),
    ("truncated-file", None, _truncated, None, ""),
    ("wrong-encoding", None, _wrong_encoding, None, ""),
    ("extra-columns", extra_columns, _write, "batch_columns", "surprise"),
    ("wind-in-m-per-s", wind_in_m_per_s, _write, "batch_unit_change", "column 'wind_speed': values ~0.5"),
]


def _run_loop() -> dg.ExecuteInProcessResult:
    job = build_definitions().resolve_job_def("mlops_loop")
    with dg.DagsterInstance.ephemeral() as instance:
        return job.execute_in_process(instance=instance, raise_on_error=False)


def _chain(error) -> str:
    """A step failure's message with every cause's (Dagster wraps the asset's own error)."""
    parts = []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return " <- ".join(parts)


def _snapshot_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (root / "snapshots").glob("*")}


@pytest.fixture(scope="module")
def clean_state(tmp_path_factory, flights) -> Path:
    """A data dir after one clean, successful run of the loop: champion v1."""
    root = tmp_path_factory.mktemp("clean") / "data"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_DATA_DIR", str(root))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLOPS_DATASET_CONFIG", raising=False)
        mp.setenv("DAGSTER_HOME", str(root.parent / "dagster_home"))
        land_months(root / "landing" / "flights", (1, 2), SAMPLE, frame=flights)
        result = _run_loop()
        assert result.success, {n: c.description for n, c in check_results(result).items()}
        assert MLflow().version_by_alias(MODEL, CHAMPION) is not None
    return root


@pytest.fixture
def copied_state(clean_state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    shutil.copytree(clean_state, root)
    monkeypatch.setenv("MLOPS_DATA_DIR", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLOPS_DATASET_CONFIG", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return root


@pytest.mark.parametrize(("change", "write", "check", "names"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_batch_is_blocked_by_name_and_the_champion_stays(
    copied_state: Path, flights: pd.DataFrame, change, write, check, names: str
):
    root = copied_state
    res = MLflow()
    champion_before = res.version_by_alias(MODEL, CHAMPION).version
    versions_before = len(res.client().search_model_versions(f"name='{MODEL}'"))
    snapshots_before = _snapshot_bytes(root)

    march = _march(flights)
    write(change(march) if change else march, root / "landing" / "flights" / BAD)
    result = _run_loop()

    assert not result.success
    if check is not None:
        verdict = check_results(result)[check]
        assert not verdict.passed
        assert BAD in verdict.description and names in verdict.description, verdict.description
        assert materialized(result) == {"dataset_snapshot"}  # blocked before any training
    else:
        failures = [_chain(e.step_failure_data.error) for e in result.get_step_failure_events()]
        assert failures and BAD in failures[0] and names in failures[0], failures
        assert materialized(result) == set()

    assert res.version_by_alias(MODEL, CHAMPION).version == champion_before
    assert len(res.client().search_model_versions(f"name='{MODEL}'")) == versions_before
    after = _snapshot_bytes(root)
    assert {k: v for k, v in after.items() if k in snapshots_before} == snapshots_before
    # Nothing half-written: every stored file is a whole snapshot (hashing to its name) or the
    # record of which landed files made one (`<id>.batches.json`, what `explain` prints), no temp file.
    assert all(name.endswith((".parquet", ".batches.json")) for name in after), sorted(after)
    for name in set(after) - set(snapshots_before):
        if name.endswith(".parquet"):
            assert content_id(pd.read_parquet(root / "snapshots" / name)) == name.removesuffix(".parquet")
        else:
            assert (root / "snapshots" / name.replace(".batches.json", ".parquet")).exists(), name
