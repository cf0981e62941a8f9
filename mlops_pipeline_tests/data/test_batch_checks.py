"""Per-batch data checks on small frames, without Dagster: each finding names batch, column, values."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops_pipeline.data.batch_checks import check_batches, check_overall
from mlops_pipeline.data.snapshots import Batch, LandingError, read_batches

NOW = pd.Timestamp("2026-01-01")


def _failing(found: dict) -> dict[str, list[str]]:
    return {k: [f.describe() for f in v] for k, v in found.items() if v}


def test_every_month_of_2013_passes_every_batch_check_on_its_own(months, spec, contract):
    batches = [Batch(f"flights_2013_{m:02d}.parquet", df, NOW) for m, df in months.items()]
    assert _failing(check_batches(batches, contract, spec, now=NOW)) == {}
    assert _failing(check_overall(pd.concat(months.values()), contract, spec)) == {}


def test_a_small_batch_of_nulls_is_not_diluted_by_a_large_snapshot(months, spec, contract):
    small = months[3].head(3000).copy()
    small.loc[small.sample(frac=0.6, random_state=0).index, "temp"] = None
    batches = [Batch(f"m{m}.parquet", months[m], NOW) for m in (1, 2)] + [Batch("small.parquet", small, NOW)]
    assert pd.concat([b.frame for b in batches])["temp"].isna().mean() < contract.null_limit("temp")
    found = check_batches(batches, contract, spec, now=NOW)["batch_null_rates"]
    assert [(f.batch, f.column) for f in found] == [("small.parquet", "temp")]
    assert "60.0% nulls in 3000 rows" in found[0].describe()


def test_numeric_strings_are_counted_and_refused(months, spec, contract):
    bad = months[3].head(500).copy()
    bad["distance"] = bad["distance"].astype(str)
    bad.loc[0, "distance"] = "far"
    [finding] = check_batches([Batch("b.parquet", bad, NOW)], contract, spec, now=NOW)["batch_dtypes"]
    assert finding.column == "distance" and "499 number(s) sent as text" in finding.message
    assert "'far'" in finding.examples


def test_future_timestamps_are_relative_to_the_batch_landing(months, spec, contract):
    batch = months[3].head(500).copy()
    found = check_batches([Batch("b.parquet", batch, pd.Timestamp("2013-02-27"))], contract, spec, now=NOW)
    [finding] = found["batch_future_timestamps"]
    assert finding.column == "time_hour" and "after the batch landed (2013-02-27" in finding.message
    assert not found["batch_time_window"]  # inside the reviewed window, only later than its landing


def test_duplicated_rows_without_a_key_are_a_share(months, spec, contract):
    no_key = spec.model_copy(update={"key_columns": []})
    batch = months[3].head(1000)
    assert not check_batches([Batch("b", batch, NOW)], contract, no_key, now=NOW)["batch_duplicates"]
    doubled = pd.concat([batch, batch.head(100)], ignore_index=True)
    [finding] = check_batches([Batch("b", doubled, NOW)], contract, no_key, now=NOW)["batch_duplicates"]
    assert "9.1% of rows duplicate another row entirely" in finding.message


def test_a_batch_of_one_class_is_refused_but_a_tiny_one_is_not_judged(months, spec, contract):
    late = months[3].head(500).assign(arr_delay=90.0)
    found = check_batches([Batch("late.parquet", late, NOW)], contract, spec, now=NOW)
    [finding] = found["batch_class_balance"]
    assert finding.column == "delayed" and "1 class(es)" in finding.message
    assert not check_batches([Batch("t", late.head(20), NOW)], contract, spec, now=NOW)["batch_class_balance"]


def test_a_year_past_2262_names_the_file_and_column(tmp_path, months):
    df = months[1].head(10)
    table = pa.Table.from_pandas(df, preserve_index=False)
    i = table.schema.get_field_index("time_hour")
    times = pa.array([pd.Timestamp("2400-05-01").to_pydatetime()] * len(df), type=pa.timestamp("us"))
    pq.write_table(table.set_column(i, "time_hour", times), tmp_path / "far.parquet")
    df.to_parquet(tmp_path / "ok.parquet", index=False)
    with pytest.raises(LandingError, match=r"far\.parquet: column 'time_hour' .*2400-05-01"):
        read_batches(str(tmp_path / "*.parquet"), "parquet")


def test_one_batch_at_a_time_with_the_other_batches_columns_finds_what_all_at_once_does(
    months, spec, contract
):
    from mlops_pipeline.data.batch_checks import check_batch, no_findings, other_columns

    odd = months[2].head(400).assign(gate="B7")  # a column only this batch has: a changed format?
    shared = [months[m].head(400).assign(terminal="4") for m in (3, 4)]  # known to another batch
    nulls = months[5].head(300).copy()
    nulls.loc[nulls.sample(frac=0.7, random_state=1).index, "temp"] = None
    batches = [Batch("odd", odd, NOW), *(Batch(f"s{i}", b, NOW) for i, b in enumerate(shared)),
               Batch("nulls", nulls, NOW)]
    together = check_batches(batches, contract, spec, now=NOW)
    assert [(f.batch, f.column) for f in together["batch_columns"]] == [("odd", "gate")]
    assert [(f.batch, f.column) for f in together["batch_null_rates"]] == [("nulls", "temp")]
    others = other_columns([set(b.frame.columns) for b in batches])
    assert "gate" not in others[0] and "terminal" in others[1] and "gate" in others[3]
    one_by_one = no_findings()
    for b, rest in zip(batches, others, strict=True):
        for f in check_batch(b, contract, spec, rest, NOW):
            one_by_one[f.check].append(f)
    assert one_by_one == together
    # A lone batch has nobody to differ from: only the contract judges its columns.
    assert other_columns([{"a", "b"}]) == [{"a", "b"}]
