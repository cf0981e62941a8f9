"""The landing area taken as one immutable, content-addressed snapshot, its batches checked.

`take_snapshot` is the `dataset_snapshot` step without Dagster: index the landed batches (only new
ones are read), and when the same files already made a stored snapshot that was checked under
this contract, spec and checks' code, reuse it without reading the landing area; otherwise read
every batch, check each on its own (`batch_checks`), write the snapshot under its content id and
record beside it which files made it (`lineage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_pipeline.data.storage import Storage
    from mlops_pipeline.spec import DatasetSpec


@dataclass
class TakenSnapshot:
    """What taking the snapshot did and found."""

    id: str
    created: bool  # False: this content was already stored, left untouched
    rows: int
    columns: int
    batches: int  # landed batches the snapshot holds
    #: Per-batch check findings: {check name: [batch_checks.Finding, ...]}.
    findings: dict
    time_start: str
    time_end: str
    landing_read: str  # how the landing area was read (all batches, or skipped)
    batches_indexed_now: int  # batches this call read into the index
    #: Batches lacking columns other batches have (null there), by batch.
    gaps: dict = field(default_factory=dict)
    #: Why the id came from the whole landing area rather than the batch index (None: the index).
    id_from_landing: str | None = None


def checks_digest(spec: DatasetSpec) -> str:
    """Names what the per-batch checks' findings depend on besides the files: the contract, the
    dataset spec and the checks' code (findings stored under another digest are not reused)."""
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


def _already_stored(storage: Storage, index: Any, snapshot_id: str, digest: str):
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


def _record_batches(storage: Storage, snapshot_id: str, pattern: str, landed: list[dict],
                    rows: int, start: str, end: str) -> None:
    """Beside the snapshot, which landed files made it, each with its own content id
    (`lineage.batches_relative`), so `mlops-pipeline explain` names them without guessing what was
    landed then. Written once: the first landing that produced this content is the one recorded."""
    import json

    from mlops_pipeline.deployment.lineage import batches_relative

    relative = batches_relative(snapshot_id)
    if storage.exists(storage.uri(relative)):
        return
    record = {"snapshot_id": snapshot_id, "rows": rows, "time_start": start, "time_end": end,
              "landing": pattern, "batches": landed}
    storage.write_bytes(relative, json.dumps(record, indent=1).encode(), "application/json")


def take_snapshot(spec: DatasetSpec, storage: Storage, cache_rows: int) -> TakenSnapshot:
    """Snapshot the spec's landing area (see the module docstring). `cache_rows` bounds the batch
    index's cached row hashes (`Settings.batch_index_cache_rows`)."""
    from mlops_pipeline.data import batch_index
    from mlops_pipeline.data.batch_checks import check_batches
    from mlops_pipeline.data.contract import load_contract
    from mlops_pipeline.data.snapshots import (
        canonicalize,
        concat_batches,
        content_id,
        read_batches,
        time_range,
    )

    pattern = storage.landing_glob(spec)
    # Only batches not indexed yet are read here; the id comes from every batch's stored row hashes.
    index = batch_index.index_landing(pattern, spec.source.format, storage=storage)
    snapshot_id = index.snapshot_id(cache_rows)
    id_from_landing = None if snapshot_id is not None else str(index.mismatch())
    digest = checks_digest(spec)
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
    return TakenSnapshot(
        id=snapshot_id, created=created, rows=rows, columns=columns, batches=len(index.entries),
        findings=findings, time_start=start, time_end=end, landing_read=landing_read,
        batches_indexed_now=len(index.stats.batches_read), gaps=gaps,
        id_from_landing=id_from_landing,
    )
