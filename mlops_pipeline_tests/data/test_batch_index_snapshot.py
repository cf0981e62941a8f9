"""`dataset_snapshot` names its snapshot from the batch index; an unchanged landing whose snapshot
is stored is not read at all, and the per-batch checks still say what they said."""

from __future__ import annotations

import pandas as pd

from mlops_pipeline.data.snapshots import content_id, read_landing
from mlops_pipeline_tests.conftest import check_results


def _snapshot_metadata(result) -> dict:
    [event] = result.asset_materializations_for_node("dataset_snapshot")
    return {k: v.value for k, v in event.metadata.items()}


def test_an_unchanged_landing_is_not_read_and_its_findings_are_kept(data_dir, land, run_loop,
                                                                     monkeypatch):
    land(months=(1, 2))
    folder = data_dir / "landing" / "flights"
    first = run_loop(assets=["dataset_snapshot"])
    meta = _snapshot_metadata(first)
    assert meta["newly_written"] is True and meta["landing_read"] == "2 batch(es)"
    assert meta["snapshot_id"] == content_id(read_landing(str(folder / "*.parquet"), "parquet"))

    # March lands with an unknown carrier in a third of its rows: its check fails by name.
    [march] = land(months=(3,))
    bad = pd.read_parquet(march)
    bad.loc[bad.sample(frac=0.3, random_state=0).index, "carrier"] = "ZZ"
    bad.to_parquet(march, index=False)
    second = run_loop(assets=["dataset_snapshot"])
    meta2 = _snapshot_metadata(second)
    assert meta2["newly_written"] is True and meta2["batches_indexed_now"] == 1
    verdict = check_results(second)["batch_unseen_categories"]
    assert not verdict.passed and march.name in verdict.description

    opened: list[str] = []
    real = pd.read_parquet

    def counting(path, *args, **kwargs):
        opened.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", counting)
    third = run_loop(assets=["dataset_snapshot"])
    monkeypatch.setattr(pd, "read_parquet", real)
    meta3 = _snapshot_metadata(third)
    assert meta3["snapshot_id"] == meta2["snapshot_id"] and meta3["newly_written"] is False
    assert meta3["landing_read"].startswith("skipped") and meta3["batches_indexed_now"] == 0
    assert meta3["dagster/row_count"] == meta2["dagster/row_count"]
    assert meta3["time_start"] == meta2["time_start"] and meta3["time_end"] == meta2["time_end"]
    assert not [p for p in opened if str(folder) in p]  # only the stored snapshot was re-read
    again = check_results(third)
    assert {n: c.passed for n, c in again.items()} == {n: c.passed for n, c in check_results(second).items()}
    assert again["batch_unseen_categories"].description == verdict.description
