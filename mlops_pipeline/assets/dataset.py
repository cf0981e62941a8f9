"""Stage 1: the landing area becomes an immutable, content-addressed snapshot."""


from dataclasses import dataclass

import dagster as dg

from mlops_pipeline.resources import DatasetResource, StorageResource
from mlops_pipeline.snapshots import (
    canonicalize,
    content_id,
    missing_columns_by_batch,
    read_landing,
    time_range,
)


@dataclass(frozen=True)
class SnapshotRef:
    """What downstream stages need to find a snapshot; the data stays in the store."""

    id: str
    path: str
    rows: int
    columns: int
    batches: int


@dg.asset(
    group_name="data",
    kinds={"pandas", "parquet"},
    description="Every landed batch, as one immutable snapshot whose id is the SHA-256 of its content.",
)
def dataset_snapshot(
    context: dg.AssetExecutionContext, dataset: DatasetResource, storage: StorageResource
) -> dg.Output[SnapshotRef]:
    spec = dataset.spec()
    pattern = storage.landing_glob(spec)
    df = read_landing(pattern, spec.source.format, storage=storage)
    snapshot_id = content_id(df)
    order = [c for c in [spec.time_column, *spec.key_columns] if c in df.columns]
    stored = canonicalize(df).sort_values(order, kind="stable") if order else canonicalize(df)
    created = storage.write_snapshot(snapshot_id, stored)
    gaps = missing_columns_by_batch(pattern, spec.source.format, storage=storage)
    if gaps:
        context.log.warning(f"batches lacking columns other batches have (null there): {gaps}")
    context.log.info(
        f"snapshot {snapshot_id[:12]} {'written' if created else 'already stored; left untouched'}"
    )
    start, end = time_range(df, spec.time_column) if spec.time_column in df else ("", "")
    ref = SnapshotRef(
        id=snapshot_id,
        path=storage.snapshot_uri(snapshot_id),
        rows=len(df),
        columns=df.shape[1],
        batches=len(storage.list_uris(pattern)),
    )
    return dg.Output(
        ref,
        data_version=dg.DataVersion(snapshot_id),
        metadata={
            "snapshot_id": snapshot_id,
            "path": dg.MetadataValue.path(ref.path),
            "dagster/row_count": ref.rows,
            "columns": ref.columns,
            "landed_batches": ref.batches,
            "time_start": start,
            "time_end": end,
            "newly_written": created,
            "batches_lacking_columns": dg.MetadataValue.json(gaps),
        },
    )


@dg.asset_check(
    asset=dataset_snapshot,
    blocking=True,
    description="Is the stored snapshot intact? Re-reads it and recomputes its content id.",
)
def snapshot_matches_content_id(
    dataset_snapshot: SnapshotRef, storage: StorageResource
) -> dg.AssetCheckResult:
    stored = storage.read_snapshot(dataset_snapshot.id)
    actual = content_id(stored)
    ok = actual == dataset_snapshot.id
    return dg.AssetCheckResult(
        passed=ok,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "stored snapshot hashes to its id"
            if ok
            else f"snapshot file {dataset_snapshot.path} hashes to {actual}, not its id: corrupted"
        ),
        metadata={"expected": dataset_snapshot.id, "actual": actual},
    )
