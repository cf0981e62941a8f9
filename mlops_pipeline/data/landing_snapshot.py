"""The landing area taken as one immutable, content-addressed snapshot, its batches checked.

`take_snapshot` is the `dataset_snapshot` step without Dagster: index the landed batches (only new
ones are read), and when the same files already made a stored snapshot that was checked under
this contract, spec and checks' code, reuse it without reading the landing area; otherwise check
every batch on its own (`batch_checks`), write the snapshot under its content id and record beside
it which files made it (`lineage`).

When the batch index gives the id (every batch has the same columns in the same dtypes), the
landing area is streamed: one batch at a time is read, checked, canonicalized, sorted within itself
by the time and key columns and appended to the stored table (`tables.write_once`), batches in
order of their first timestamp (then name; by name without a time column). Memory is bounded by
one batch plus the row hashes the id is derived from (8 bytes a row, per batch and merged), however
many rows were landed. So the stored rows are sorted within each batch only, not globally: nothing
downstream may rely on a global sort (sort what you read). Batches whose dtypes differ (small,
messy landings) are read, concatenated and sorted as one table, as the id is then computed from
the whole table.
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

    from mlops_pipeline.data import batch_checks, batch_duplicates, domain, expectations

    h = hashlib.sha256()
    try:
        h.update(spec.contract_path().read_bytes())
    except OSError:
        h.update(b"no contract")
    h.update(spec.model_dump_json().encode())
    for module in (batch_checks, batch_duplicates, domain, expectations):  # the rules' code
        h.update(Path(module.__file__).read_bytes())
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
        if snapshot_id is not None:
            created, findings, landed, (start, end) = _stream(spec, storage, index, snapshot_id)
            rows, columns = index.rows, len(index.columns)
        else:
            snapshot_id, created, findings, landed, rows, columns, (start, end) = _whole(
                spec, storage, pattern, index)
        _record_batches(storage, snapshot_id, pattern, landed, rows, start, end)
        batch_index.save_findings(index, snapshot_id, digest, findings, storage)
        landing_read = f"{len(index.entries)} batch(es)"
    return TakenSnapshot(
        id=snapshot_id, created=created, rows=rows, columns=columns, batches=len(index.entries),
        findings=findings, time_start=start, time_end=end, landing_read=landing_read,
        batches_indexed_now=len(index.stats.batches_read), gaps=gaps,
        id_from_landing=id_from_landing,
    )


def _landed(name: str, cid: str, rows: int, landed_at: Any, problems: list) -> dict:
    """One batch's entry in the snapshot's batches record."""
    return {"name": name, "content_id": cid, "rows": rows,
            "landed_at": None if landed_at is None else landed_at.isoformat(),
            "check_findings": [f"{f.check}: {f.message}" for f in problems]}


def _stream(spec: DatasetSpec, storage: Storage, index: Any, snapshot_id: str):
    """(created, findings, landed, time range): every batch read, checked and (unless the snapshot
    is stored already) written one at a time; nothing holds an earlier batch."""
    import pandas as pd

    from mlops_pipeline.data import batch_checks, tables
    from mlops_pipeline.data.batch_duplicates import CrossBatchDuplicates
    from mlops_pipeline.data.contract import load_contract
    from mlops_pipeline.data.snapshots import LandingError, _read, canonicalize, read_batch

    contract, entries, fmt = load_contract(spec), index.entries, spec.source.format
    others = batch_checks.other_columns([set(e.columns) for e in entries])
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    columns = set(index.columns)
    time_col = spec.time_column if spec.time_column in columns else None
    sort_by = [c for c in [spec.time_column, *spec.key_columns] if c in columns]
    produce = not storage.has_snapshot(snapshot_id)
    order = _batch_order(entries, time_col, fmt, storage) if produce else range(len(entries))
    problems: list[list] = [[] for _ in entries]
    landed: list[dict] = [{} for _ in entries]
    times = _TimeRange()
    repeats = CrossBatchDuplicates(spec)  # rows a batch repeats from earlier-landed batches

    def chunks():
        for i in order:
            e = entries[i]
            batch = read_batch(e.location, fmt, storage)
            if len(batch.frame) != e.rows:
                raise LandingError(f"landed batch {e.location} changed while the snapshot was taken "
                                   f"({e.rows} rows indexed, {len(batch.frame)} read): run again")
            problems[i] = batch_checks.check_batch(batch, contract, spec, others[i], now)
            landed[i] = _landed(e.name, e.content_id, e.rows, batch.landed_at, problems[i])
            repeats.add(e.name, e.location, batch.frame, batch.landed_at)
            if time_col is not None:
                times.add(batch.frame[time_col])
            if not produce:
                continue
            canon = canonicalize(batch.frame)
            del batch
            canon = canon.sort_values(sort_by, kind="stable") if sort_by else canon
            yield canon
            del canon

    if produce:
        created, _ = tables.write_once(storage, storage.snapshot_uri(snapshot_id), chunks())
    else:
        created = False
        for _ in chunks():
            pass
    position = {e.name: i for i, e in enumerate(entries)}
    for f in repeats.findings(lambda loc, cols: _read(loc, fmt, storage, cols)):
        i = position[f.batch]
        problems[i].append(f)
        landed[i]["check_findings"].append(f"{f.check}: {f.message}")
    findings = batch_checks.no_findings()
    for found in problems:  # in listing order, as the whole-table path reports them
        for f in found:
            findings[f.check].append(f)
    return created, findings, landed, times.strings() if time_col is not None else ("", "")


def _whole(spec: DatasetSpec, storage: Storage, pattern: str, index: Any):
    """(id, created, findings, landed, rows, columns, time range) from the whole landing area read
    at once: when the batches' dtypes differ, only the whole table gives the id."""
    from mlops_pipeline.data.batch_checks import check_batches
    from mlops_pipeline.data.batch_duplicates import CHECK as CROSS_CHECK
    from mlops_pipeline.data.batch_duplicates import CrossBatchDuplicates
    from mlops_pipeline.data.contract import load_contract
    from mlops_pipeline.data.snapshots import (
        canonicalize,
        concat_batches,
        content_id,
        read_batches,
        time_range,
    )

    batches = read_batches(pattern, spec.source.format, storage=storage)
    findings = check_batches(batches, load_contract(spec), spec)
    repeats = CrossBatchDuplicates(spec)  # rows a batch repeats from earlier-landed batches
    frames = {b.name: b.frame for b in batches}
    for b in batches:
        repeats.add(b.name, b.name, b.frame, b.landed_at)
    findings[CROSS_CHECK] += repeats.findings(lambda name, cols: frames[name][cols] if cols else frames[name])
    frames.clear()
    df = concat_batches(batches)
    by_batch: dict[str, list] = {}
    for found in findings.values():
        for f in found:
            by_batch.setdefault(f.batch, []).append(f)
    indexed = {e.name: e.content_id for e in index.entries}
    landed = [_landed(b.name, indexed.get(b.name) or content_id(b.frame), len(b.frame), b.landed_at,
                      by_batch.get(b.name, [])) for b in batches]
    del batches
    snapshot_id = content_id(df)
    order = [c for c in [spec.time_column, *spec.key_columns] if c in df.columns]
    stored = canonicalize(df).sort_values(order, kind="stable") if order else canonicalize(df)
    created = storage.write_snapshot(snapshot_id, stored)
    del stored
    has_time = spec.time_column is not None and spec.time_column in df
    start_end = time_range(df, spec.time_column) if has_time else ("", "")
    return snapshot_id, created, findings, landed, len(df), df.shape[1], start_end


class _TimeRange:
    """First and last timestamp over batches seen one at a time (as `snapshots.time_range` gives
    them for all batches at once)."""

    def __init__(self) -> None:
        self.lo: Any = None
        self.hi: Any = None

    def add(self, values: Any) -> None:
        import pandas as pd

        t = pd.to_datetime(values)
        lo, hi = t.min(), t.max()
        if pd.isna(lo):
            return
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)

    def strings(self) -> tuple[str, str]:
        import pandas as pd

        return (str(pd.NaT), str(pd.NaT)) if self.lo is None else (str(self.lo), str(self.hi))


def _batch_order(entries: list, time_col: str | None, fmt: str, storage: Storage) -> list[int]:
    """Positions of the batches in the order their rows are stored: by first timestamp, then name
    (a batch without timestamps last); without a time column, by name."""
    if time_col is None:
        return sorted(range(len(entries)), key=lambda i: (entries[i].name, i))
    keys = [(_first_time(e.location, time_col, fmt, storage), e.name, i) for i, e in enumerate(entries)]
    return [i for *_, i in sorted(keys)]


def _first_time(location: str, column: str, fmt: str, storage: Storage) -> tuple[int, int]:
    """(0, nanoseconds since the epoch, UTC) of a batch's first timestamp, (1, 0) when it has none:
    from the Parquet footer's statistics when every row group has them, else by reading the
    time column alone."""
    import pandas as pd

    from mlops_pipeline.data.snapshots import _read

    first = _footer_min(storage, location, column) if fmt == "parquet" else None
    if first is None:
        try:
            first = pd.to_datetime(_read(location, fmt, storage, [column])[column]).min()
        except (ValueError, TypeError, OverflowError):
            first = pd.NaT
    return (1, 0) if pd.isna(first) else (0, int(pd.Timestamp(first).value))


def _footer_min(storage: Storage, location: str, column: str) -> Any:
    """The smallest value of a timestamp or date column from the row groups' statistics: NaT when
    every value is null, None when the footer cannot tell (no statistics, another type)."""
    import pandas as pd
    import pyarrow as pa

    from mlops_pipeline.data.tables import parquet_metadata

    try:
        meta = parquet_metadata(storage, location)
        field = meta.schema.to_arrow_schema().field(column)
        if not (pa.types.is_timestamp(field.type) or pa.types.is_date(field.type)):
            return None
        lows = []
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            [stats] = [group.column(c).statistics for c in range(group.num_columns)
                       if group.column(c).path_in_schema == column]
            if stats is not None and stats.has_min_max:
                lows.append(pd.Timestamp(stats.min))
            elif stats is None or stats.null_count != group.num_rows:
                return None
        return min(lows) if lows else pd.NaT
    except (KeyError, ValueError, TypeError, OverflowError, OSError):
        return None
