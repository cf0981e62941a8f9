"""Snapshots are written once and never rewritten."""

from __future__ import annotations

import pandas as pd

from mlops_pipeline.data.snapshots import content_id
from mlops_pipeline.defs.resources import StorageResource


def test_a_snapshot_is_written_once_read_only_and_never_rewritten(tmp_path):
    store = StorageResource(root=str(tmp_path))
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
    store = StorageResource(root=str(tmp_path))
    try:
        store.read_snapshot("deadbeef")
    except FileNotFoundError as exc:
        assert "deadbeef" in str(exc)
    else:
        raise AssertionError("expected FileNotFoundError")
