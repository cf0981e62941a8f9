"""Stage 1: the landing area becomes an immutable, content-addressed snapshot."""


import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg

from mlops_pipeline.data.snapshots import (
    canonicalize,
    concat_batches,
    content_id,
    read_batches,
    time_range,
)
from mlops_pipeline.defs.resources import DatasetResource, StorageResource

MAX_FINDING_ROWS = 50



def _versioned_output(value, version: str, metadata: dict) -> dg.Output:
    """The snapshot's content id as its DataVersion (what `data_version_changed` automation reads).

    Dagster marks `Output(data_version=...)` beta and warns on every call; we depend on it
    knowingly, so the warning is silenced here, where it arises, and nowhere else.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter `data_version`", category=dg.BetaWarning)
        return dg.Output(value, data_version=dg.DataVersion(version), metadata=metadata)


@dataclass(frozen=True)
class SnapshotRef:
    """What downstream stages need to find a snapshot; the data stays in the store."""

    id: str
    path: str
    rows: int
    columns: int
    batches: int
    #: Per-batch check findings (`mlops_pipeline.data.batch_checks`), computed from the very
    #: frames this snapshot was built from: {check name: [Finding, ...]}.
    batch_findings: dict = field(default_factory=dict)


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
    from mlops_pipeline.data import batch_index
    from mlops_pipeline.data.batch_checks import check_batches
    from mlops_pipeline.data.contract import load_contract

    # Only batches not indexed yet are read here; the id comes from every batch's stored row hashes.
    index = batch_index.index_landing(pattern, spec.source.format, storage=storage)
    snapshot_id = index.snapshot_id()
    if snapshot_id is None:
        context.log.info(f"snapshot id from the whole landing area (not the batch index): {index.mismatch()}")
    digest = _checks_digest(spec)
    reused = _already_stored(storage, index, snapshot_id, digest) if snapshot_id else None
    gaps = index.gaps()
    if reused is not None:  # the same files made this snapshot and were checked: nothing to read
        assert snapshot_id is not None
        findings, record = reused
        created, rows, columns = False, index.rows, len(index.columns)
        start, end = record.get("time_start", ""), record.get("time_end", "")
        landing_read = "skipped: snapshot already stored and these files already checked"
    else:
        batches = read_batches(pattern, spec.source.format, storage=storage)
        findings = check_batches(batches, load_contract(spec), spec)
        df = concat_batches(batches)
        problems: dict[str, list[str]] = {}
        for check, found in findings.items():
            for f in found:
                problems.setdefault(f.batch, []).append(f"{check}: {f.message}")
        indexed = {e.name: e.content_id for e in index.entries}
        landed = [{"name": b.name, "content_id": indexed.get(b.name) or content_id(b.frame),
                   "rows": len(b.frame),
                   "landed_at": None if b.landed_at is None else b.landed_at.isoformat(),
                   "check_findings": problems.get(b.name, [])} for b in batches]
        del batches
        snapshot_id = snapshot_id or content_id(df)
        order = [c for c in [spec.time_column, *spec.key_columns] if c in df.columns]
        stored = canonicalize(df).sort_values(order, kind="stable") if order else canonicalize(df)
        created = storage.write_snapshot(snapshot_id, stored)
        del stored
        has_time = spec.time_column is not None and spec.time_column in df
        start, end = time_range(df, spec.time_column) if has_time else ("", "")
        rows, columns = len(df), df.shape[1]
        _record_batches(storage, snapshot_id, pattern, landed, rows, start, end)
        batch_index.save_findings(index, snapshot_id, digest, findings, storage)
        landing_read = f"{len(index.entries)} batch(es)"
    if gaps:
        context.log.warning(f"batches lacking columns other batches have (null there): {gaps}")
    context.log.info(
        f"snapshot {snapshot_id[:12]} {'written' if created else 'already stored; left untouched'}; "
        f"landing read: {landing_read}"
    )
    ref = SnapshotRef(
        id=snapshot_id,
        path=storage.snapshot_uri(snapshot_id),
        rows=rows,
        columns=columns,
        batches=len(index.entries),
        batch_findings=findings,
    )
    return _versioned_output(
        ref,
        snapshot_id,
        metadata={
            "snapshot_id": snapshot_id,
            "path": dg.MetadataValue.path(ref.path),
            "dagster/row_count": ref.rows,
            "columns": ref.columns,
            "landed_batches": ref.batches,
            "time_start": start,
            "time_end": end,
            "newly_written": created,
            "landing_read": landing_read,
            "batches_indexed_now": len(index.stats.batches_read),
            "batches_lacking_columns": dg.MetadataValue.json(gaps),
        },
    )


def _checks_digest(spec) -> str:
    """Names what the per-batch checks' findings depend on besides the files: the contract, the
    dataset spec and the checks' code."""
    import hashlib
    from pathlib import Path

    from mlops_pipeline.data import batch_checks

    h = hashlib.sha256()
    try:
        h.update(spec.contract_path().read_bytes())
    except OSError:
        h.update(b"no contract")
    h.update(spec.model_dump_json().encode())
    h.update(Path(batch_checks.__file__).read_bytes())
    return h.hexdigest()


def _already_stored(storage: StorageResource, index, snapshot_id: str, digest: str):
    """(findings, batches record) when this snapshot is stored and these very files were checked
    under this contract, spec and code; else None (read the landing area as for a new snapshot)."""
    from mlops_pipeline.data import batch_index
    from mlops_pipeline.deployment.lineage import read_snapshot_batches

    if not storage.has_snapshot(snapshot_id):
        return None
    record = read_snapshot_batches(storage, snapshot_id)
    if record is None or record.get("rows") != index.rows:
        return None
    findings = batch_index.load_findings(index, snapshot_id, digest, storage)
    return None if findings is None else (findings, record)


def _record_batches(storage: StorageResource, snapshot_id: str, pattern: str, landed: list[dict],
                    rows: int, start: str, end: str) -> None:
    """Beside the snapshot, which landed files made it, each with its own content id
    (`lineage.batches_relative`), so `mlops-pipeline explain` names them without guessing what was landed
    then. Written once: the first landing that produced this content is the one recorded."""
    import json

    from mlops_pipeline.deployment.lineage import batches_relative

    relative = batches_relative(snapshot_id)
    if storage.exists(storage.uri(relative)):
        return
    record = {"snapshot_id": snapshot_id, "rows": rows, "time_start": start, "time_end": end,
              "landing": pattern, "batches": landed}
    storage.write_bytes(relative, json.dumps(record, indent=1).encode(), "application/json")


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
        yield dg.AssetCheckResult(
            check_name=name, passed=not findings,
            severity=dg.AssetCheckSeverity.WARN if warn_only else dg.AssetCheckSeverity.ERROR,
            description=summary(name, findings, f"{dataset_snapshot.batches} landed batch(es)"),
            metadata={
                "failing_batches": ", ".join(sorted({f.batch for f in findings})),
                "failing_columns": ", ".join(sorted({str(f.column) for f in findings if f.column})),
                "findings": _findings_table(findings),
            },
        )
