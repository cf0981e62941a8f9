"""Ids that become paths are checked against their format first (`mlops_pipeline.ids`): a snapshot
id, run id or report name holding `/` or `..` never names a file outside the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_pipeline.ids import InvalidId, check_segment, check_snapshot_prefix

TRAVERSALS = ["../../somewhere", "..", ".", "a/b", "a\\b", "/etc/passwd", "", "x" * 201, "a\nb", ".hidden"]


def test_snapshot_ids_and_prefixes_are_hex():
    sid = "0123456789abcdef" * 4
    assert check_snapshot_prefix(sid) == sid and check_snapshot_prefix("ab12") == "ab12"
    for bad in [*TRAVERSALS, "ABC", sid + "0", "g1", None, 12]:
        with pytest.raises(InvalidId, match="snapshot id"):
            check_snapshot_prefix(bad)


@pytest.mark.parametrize("bad", TRAVERSALS)
def test_a_path_segment_has_no_separator_and_no_leading_dot(bad):
    with pytest.raises(InvalidId) as err:
        check_segment(bad, "run id")
    assert "\n" not in str(err.value).replace(repr(bad), "") and str(err.value).startswith("run id ")


def test_good_names_pass():
    for good in ("f" * 64, "champion-snapshot", "4f2a9c1e8b7d4e0f9a6b3c2d1e0f9a8b",
                 "0b5c6a3e-1f2d-4c5b-9a8e-7d6c5b4a3f2e", "drift_flights_delay_v2_2013-03.html"):
        assert check_segment(good) == good


@pytest.mark.parametrize("bad", ["../../outside", "a/../../b", ".."])
def test_storage_builds_no_path_from_a_bad_id(tmp_path: Path, bad):
    from mlops_pipeline.data.storage import Storage
    from mlops_pipeline.deployment.lineage import batches_relative, read_snapshot_batches

    store = Storage(root=str(tmp_path / "data"))
    (tmp_path / "outside.batches.json").write_text('{"rows": 1}')
    for build in (store.snapshot_uri, store.snapshot_path, store.has_snapshot, store.read_snapshot,
                  store.reference_uri, store.estimator_uri, batches_relative):
        with pytest.raises(InvalidId):
            build(bad)
    with pytest.raises(InvalidId):
        read_snapshot_batches(store, bad)
    with pytest.raises(InvalidId, match="report name"):
        store.publish_report(tmp_path / "data" / "reports" / ".." )
    assert store.snapshot_uri("f" * 64).endswith(f"snapshots/{'f' * 64}.parquet")


def test_labeling_queue_files_are_named_by_a_date_only():
    from mlops_pipeline.monitoring.labeling import queue_file

    assert queue_file("2013-03-01", "csv") == "labeling/2013-03-01.csv"
    for bad in ("../../x", "2013-03-01/../../x", "today", ""):
        with pytest.raises(InvalidId, match="labeling day"):
            queue_file(bad, "csv")
