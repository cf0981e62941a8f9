"""The streamed snapshot on the production profile's store: S3 (SeaweedFS on loopback). Batches
are read from S3 one at a time, ordered by their Parquet footers (ranged reads), and the snapshot
is uploaded as one object whose content hashes to its id, read back a chunk at a time."""

from __future__ import annotations

import io

from mlops_pipeline.data import snapshots
from mlops_pipeline.data.landing_snapshot import _footer_min
from mlops_pipeline.data.tables import parquet_metadata
from mlops_pipeline_tests.data.test_landing_snapshot import assert_streamed_snapshot, split_landing


def test_the_streamed_snapshot_on_s3_has_the_whole_table_id(s3_storage, flights):
    from mlops_pipeline.spec import PROJECT_ROOT, load_spec

    spec = load_spec(PROJECT_ROOT / "data/configs/flights.yaml")
    for i, batch in enumerate(split_landing(flights, seed=4)):
        buf = io.BytesIO()
        batch.to_parquet(buf, index=False, row_group_size=40)
        s3_storage.write_bytes(f"landing/flights/part_{(i * 7) % 36:03d}.parquet", buf.getvalue())
    pattern = s3_storage.landing_glob(spec)
    assert pattern.startswith("s3://")
    first = s3_storage.list_uris(pattern)[0]
    footer = parquet_metadata(s3_storage, first)  # ranged reads of the object's tail
    frame = snapshots.read_batch(first, "parquet", s3_storage).frame
    assert footer.num_rows == len(frame) and footer.num_row_groups > 1
    assert _footer_min(s3_storage, first, "time_hour") == frame["time_hour"].min()
    snapshot_id = assert_streamed_snapshot(spec, s3_storage, pattern)
    assert s3_storage.snapshot_uri(snapshot_id).startswith("s3://")
    assert s3_storage.exists(s3_storage.snapshot_uri(snapshot_id))
