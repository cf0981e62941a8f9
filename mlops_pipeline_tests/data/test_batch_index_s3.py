"""The batch index on the production profile's store: S3 (SeaweedFS on loopback)."""

from __future__ import annotations

import io

from mlops_pipeline.data import batch_index
from mlops_pipeline.data.snapshots import content_id, read_landing
from mlops_pipeline.data.storage import Storage
from mlops_pipeline_tests.data.test_batch_index import _frame, _split


def test_indexing_on_s3_reads_only_new_objects(s3_storage, monkeypatch):
    from mlops_pipeline_tests.production.conftest import BUCKET

    storage = s3_storage
    frames = _split(_frame(900, 21), 6, 21)

    def land(i: int) -> None:
        buf = io.BytesIO()
        frames[i].to_parquet(buf, index=False)
        storage.write_bytes(f"landing/b{i}.parquet", buf.getvalue())

    for i in range(5):
        land(i)
    pattern = storage.uri("landing/*.parquet")
    first = batch_index.index_landing(pattern, "parquet", storage)
    assert len(first.stats.batches_read) == 5
    assert first.snapshot_id() == content_id(read_landing(pattern, "parquet", storage))
    stored = storage.list_uris(storage.uri("landing/.index/*.rowindex"))
    assert len(stored) == 5 and all(u.startswith(f"s3://{BUCKET}/") for u in stored)

    got: list[str] = []
    real = Storage._get
    monkeypatch.setattr(Storage, "_get", lambda self, uri: (got.append(uri), real(self, uri))[1])
    land(5)
    batch_index.clear_cache()  # a fresh process: index objects are read, old batches are not
    cold = batch_index.index_landing(pattern, "parquet", storage)
    assert [u for u in got if u.endswith(".parquet")] == [storage.uri("landing/b5.parquet")]
    assert sorted(u for u in got if u.endswith(".rowindex")) == sorted(stored)
    monkeypatch.setattr(Storage, "_get", real)
    assert cold.snapshot_id() == content_id(read_landing(pattern, "parquet", storage))
    assert [e.name for e in cold.entries] == [f"b{i}.parquet" for i in range(6)]
