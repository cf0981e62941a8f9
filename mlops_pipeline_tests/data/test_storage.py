"""Storage: snapshots are written once and never rewritten; S3 locations are named like local ones."""

from __future__ import annotations

import pandas as pd
import pytest

from mlops_pipeline.data.snapshots import content_id
from mlops_pipeline.data.storage import Storage, StorageError, _glob_match, split_s3_uri


def test_a_snapshot_is_written_once_read_only_and_never_rewritten(tmp_path):
    store = Storage(root=str(tmp_path))
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})
    sid = content_id(df)

    assert store.write_snapshot(sid, df) is True
    path = store.snapshot_path(sid)
    before = (path.stat().st_mtime_ns, path.read_bytes())
    assert oct(path.stat().st_mode & 0o777) == "0o444"

    other = pd.DataFrame({"a": [9], "b": ["z"]})
    assert store.write_snapshot(sid, other) is False
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before
    pd.testing.assert_frame_equal(store.read_snapshot(sid), df)
    assert content_id(store.read_snapshot(sid)) == sid
    assert not list(path.parent.glob(".incoming-*"))  # no temp file left behind


def test_reading_a_missing_snapshot_says_which(tmp_path):
    store = Storage(root=str(tmp_path))
    try:
        store.read_snapshot("deadbeef")
    except FileNotFoundError as exc:
        assert "deadbeef" in str(exc)
    else:
        raise AssertionError("expected FileNotFoundError")


def test_s3_globs_match_per_segment_like_local_globs():
    assert split_s3_uri("s3://b/x/y/") == ("b", "x/y")
    assert _glob_match("p/landing/flights/a.parquet", "p/landing/flights/*.parquet")
    assert not _glob_match("p/landing/flights/old/a.parquet", "p/landing/flights/*.parquet")
    assert not _glob_match("p/landing/flights/a.csv", "p/landing/flights/*.parquet")


def test_s3_root_has_no_local_base_and_names_itself(monkeypatch):
    monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", "http://127.0.0.1:1")
    store = Storage(root="s3://mlops/p/")
    assert store.is_s3 and store.snapshot_uri("abc") == "s3://mlops/p/snapshots/abc.parquet"
    assert store.describe() == "S3 store http://127.0.0.1:1 (s3://mlops/p)"
    with pytest.raises(StorageError, match="no local directory"):
        _ = store.base
