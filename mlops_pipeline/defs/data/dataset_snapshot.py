"""Stage 1: the landing area becomes an immutable, content-addressed snapshot (thin wiring over
`mlops_pipeline.data.landing_snapshot`), with its integrity and per-batch checks."""


import warnings
from collections.abc import Iterator

import dagster as dg

from mlops_pipeline.data.snapshots import stored_content_id
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.handoffs import SnapshotRef
from mlops_pipeline.defs.resources import DatasetResource
from mlops_pipeline.settings import Settings

#: Rows of a failing batch check's findings table.
MAX_FINDING_ROWS = 50


def _versioned_output(value, version: str, metadata: dict) -> dg.Output:
    """The snapshot's content id as its DataVersion (what `data_version_changed` automation reads).

    Dagster marks `Output(data_version=...)` beta and warns on every call; we depend on it
    knowingly, so the warning is silenced here, where it arises, and nowhere else.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter `data_version`", category=dg.BetaWarning)
        return dg.Output(value, data_version=dg.DataVersion(version), metadata=metadata)


@dg.asset(
    group_name="data",
    kinds={"pandas", "parquet"},
    description="Every landed batch, as one immutable snapshot whose id is the SHA-256 of its content.",
)
def dataset_snapshot(
    context: dg.AssetExecutionContext, dataset: DatasetResource, storage: dg.ResourceParam[Storage]
) -> dg.Output[SnapshotRef]:
    """`landing_snapshot.take_snapshot`, reported: the snapshot's content id is the output's data
    version, so automation sees new content, not new runs."""
    from mlops_pipeline.data.landing_snapshot import take_snapshot

    taken = take_snapshot(dataset.spec(), storage, Settings.from_env().batch_index_cache_rows)
    if taken.id_from_landing is not None:
        context.log.info(f"snapshot id from the whole landing area (not the batch index): "
                         f"{taken.id_from_landing}")
    if taken.gaps:
        context.log.warning(f"batches lacking columns other batches have (null there): {taken.gaps}")
    context.log.info(
        f"snapshot {taken.id[:12]} {'written' if taken.created else 'already stored; left untouched'}; "
        f"landing read: {taken.landing_read}"
    )
    ref = SnapshotRef(
        id=taken.id,
        path=storage.snapshot_uri(taken.id),
        rows=taken.rows,
        columns=taken.columns,
        batches=taken.batches,
        batch_findings=taken.findings,
    )
    return _versioned_output(
        ref,
        taken.id,
        metadata={
            "snapshot_id": taken.id,
            "path": dg.MetadataValue.path(ref.path),
            "dagster/row_count": ref.rows,
            "columns": ref.columns,
            "landed_batches": ref.batches,
            "time_start": taken.time_start,
            "time_end": taken.time_end,
            "newly_written": taken.created,
            "landing_read": taken.landing_read,
            "batches_indexed_now": taken.batches_indexed_now,
            "batches_lacking_columns": dg.MetadataValue.json(taken.gaps),
        },
    )


@dg.asset_check(
    asset=dataset_snapshot,
    blocking=True,
    description="Is the stored snapshot intact? Re-reads it and recomputes its content id.",
)
def snapshot_matches_content_id(
    dataset_snapshot: SnapshotRef, storage: dg.ResourceParam[Storage]
) -> dg.AssetCheckResult:
    """Re-reads the stored snapshot and recomputes its content id: a snapshot that no longer hashes to
    its id was altered after it was written, and nothing downstream may train on it. Read a chunk
    at a time (`snapshots.stored_content_id`): the check holds one chunk, not the table."""
    actual = stored_content_id(storage, dataset_snapshot.id)
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


def _findings_table(findings: list) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({"batch": f.batch, "column": str(f.column or ""), "problem": f.message,
                            "examples": ", ".join(f.examples)})
            for f in findings[:MAX_FINDING_ROWS]
        ],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string")
                                       for c in ("batch", "column", "problem", "examples")]),
    )


def _batch_check_specs() -> list[dg.AssetCheckSpec]:
    from mlops_pipeline.data.batch_checks import BATCH_CHECKS

    return [
        dg.AssetCheckSpec(name, asset="dataset_snapshot", blocking=True, description=description)
        for name, description in BATCH_CHECKS.items()
    ]


@dg.multi_asset_check(specs=_batch_check_specs(), ins={"dataset_snapshot": dg.AssetIn("dataset_snapshot")})
def landed_batch_checks(
    dataset_snapshot: SnapshotRef, dataset: DatasetResource
) -> Iterator[dg.AssetCheckResult]:
    """Each landed batch on its own (a bad small batch is not diluted by the rest): every check
    blocks and names the batch file, the column and example values — except duplicated rows in a
    dataset without key columns, which warn: with no key, two equal rows may be two real records
    (a file landed twice cannot happen: `land --from` names batches by content)."""
    from mlops_pipeline.data.batch_checks import BATCH_CHECKS, summary
    from mlops_pipeline.data.quarantine import quarantine_hint

    keyless = not dataset.spec().key_columns
    found = getattr(dataset_snapshot, "batch_findings", None)
    for name in BATCH_CHECKS:
        if found is None:  # a snapshot stored before these checks existed: never checked, not passed
            yield dg.AssetCheckResult(
                check_name=name, passed=False, severity=dg.AssetCheckSeverity.ERROR,
                description="this snapshot was made before per-batch checks existed: "
                "materialize dataset_snapshot again")
            continue
        findings = found.get(name, [])
        warn_only = keyless and name == "batch_duplicates"
        description = summary(name, findings, f"{dataset_snapshot.batches} landed batch(es)")
        if findings and not warn_only:  # name the way out: set the batch aside, on record
            description += " — " + quarantine_hint(findings[0].batch)
        yield dg.AssetCheckResult(
            check_name=name, passed=not findings,
            severity=dg.AssetCheckSeverity.WARN if warn_only else dg.AssetCheckSeverity.ERROR,
            description=description,
            metadata={
                "failing_batches": ", ".join(sorted({f.batch for f in findings})),
                "failing_columns": ", ".join(sorted({str(f.column) for f in findings if f.column})),
                "findings": _findings_table(findings),
            },
        )
