"""What each landed batch contributes to a snapshot id, computed once and stored beside it.

A snapshot's id (`snapshots.content_id`) is SHA-256 over the row count, the schema and the sorted
row hashes of the whole landing area. Each row's hash depends only on that row and its columns'
canonical dtypes, so when every batch has the same columns in the same dtypes, the sorted row
hashes of all batches, merged, are exactly the whole table's: the id can be derived from per-batch
results without re-reading old batches. This module stores those results once per batch file, in
`<landing folder>/.index/<file name>.<key>.rowindex` (a JSON header with the batch's row count,
columns and dtypes, then its sorted uint64 row hashes: 8 bytes a row). The key covers the file's
name, size and version (mtime and ctime locally, the ETag on S3), so a rewritten file is indexed
again. When the batches' dtypes differ (an int column with nulls in one batch becomes float64
overall, numbers sent as text make the column text, a batch lacks a column), the whole table's
dtypes are not each batch's and the id is computed from the whole table, as before.

No Dagster here; the store is a `Storage` (local or S3) or, without one, plain files.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops_pipeline.data.snapshots import (
    Batch,
    LandingError,
    canonicalize,
    content_id,
    id_from_hashes,
    read_batch,
    read_landing,
    schema_of,
    sorted_row_hashes,
)

if TYPE_CHECKING:
    from mlops_pipeline.data.storage import Storage

INDEX_DIR = ".index"
SUFFIX = ".rowindex"
MAGIC = b"MLOPS-ROWINDEX-1\n"
#: A long-lived process (Dagster's code server, which evaluates every sensor tick) keeps the last
#: landing state's merged row hashes (8 bytes a row, up to this many rows) and each batch's header,
#: so a tick after one new batch reads that batch only, not even the old batches' index files.
#: The default of `cache_rows` (callers pass `Settings.batch_index_cache_rows`).
CACHE_ROWS = 50_000_000
_lock = threading.Lock()
_headers: dict[str, BatchEntry] = {}  # index location -> entry without its hashes
_merged: tuple[frozenset[str], np.ndarray] | None = None  # index locations -> their merged hashes


def clear_cache() -> None:
    """Forget what this process remembers (the next index reads every index file again)."""
    global _merged
    with _lock:
        _headers.clear()
        _merged = None


@dataclass(frozen=True)
class BatchEntry:
    """One landed file's contribution: its rows' sorted hashes and each column's dtypes, both as
    read (`raw`) and canonical (what the hashes were computed under)."""

    name: str
    location: str
    rows: int
    #: column -> [dtype as read, canonical dtype], in sorted column order.
    columns: dict[str, list[str]]
    content_id: str
    #: None when the hashes are already in the process's merged cache (`CACHE_ROWS`).
    hashes: np.ndarray | None
    #: Where this entry is stored (`index_location`).
    index_at: str = ""

    def header(self) -> dict:
        return {"name": self.name, "rows": self.rows, "columns": self.columns,
                "content_id": self.content_id}


@dataclass
class ReadStats:
    """What indexing cost: which batch files were read (parsed) and how many bytes came from
    batch files and from index files."""

    batches_read: list[str] = field(default_factory=list)
    batch_bytes: int = 0
    index_bytes: int = 0
    full_read: bool = False


@dataclass
class LandingIndex:
    """Every landed batch's entry, in listing order, and what building it read."""

    entries: list[BatchEntry]
    stats: ReadStats
    #: Changes whenever a landed file does (its name, size, version): the exact landing state.
    fingerprint: str = ""
    #: The process's merged hashes of a subset of these entries (those without `hashes`).
    prior: tuple[frozenset[str], np.ndarray] | None = None

    @property
    def rows(self) -> int:
        return sum(e.rows for e in self.entries)

    @property
    def columns(self) -> list[str]:
        return sorted(set().union(*(e.columns for e in self.entries)))

    def gaps(self) -> dict[str, list[str]]:
        """Which batch lacks which column another batch has (`snapshots.missing_columns_by_batch`)."""
        union = set(self.columns)
        return {e.name: sorted(union - set(e.columns)) for e in self.entries if union - set(e.columns)}

    def mismatch(self) -> str | None:
        """Why the id cannot be derived from the entries (None when it can): a batch lacks a
        column, or a column's dtype as read or canonical differs between batches."""
        if not self.entries:
            return "no batches"
        gaps = self.gaps()
        if gaps:
            name, cols = next(iter(gaps.items()))
            return f"batch {name} lacks column(s) {', '.join(cols)} that other batches have"
        first = self.entries[0]
        for e in self.entries[1:]:
            for col, dtypes in e.columns.items():
                if dtypes != first.columns[col]:
                    return (f"column '{col}' is {'/'.join(first.columns[col])} in {first.name} but "
                            f"{'/'.join(dtypes)} in {e.name}")
        return None

    def snapshot_id(self, cache_rows: int = CACHE_ROWS) -> str | None:
        """The whole landing area's `content_id`, from the stored row hashes; None when the
        batches' dtypes differ (`mismatch`), where only the whole table gives the id. The merged
        hashes are remembered for the next call when they are at most `cache_rows` rows."""
        if self.mismatch() is not None:
            return None
        first = self.entries[0]
        schema = ";".join(f"{c}:{dtypes[1]}" for c, dtypes in first.columns.items())
        if self.prior is not None:
            known, prior = self.prior
            added = [e.hashes for e in self.entries if e.index_at not in known]
            new = np.sort(np.concatenate(added)) if added else np.empty(0, np.uint64)
            merged = np.insert(prior, np.searchsorted(prior, new), new)  # prior stays untouched
        else:
            merged = np.concatenate([e.hashes for e in self.entries])
            merged.sort(kind="stable")  # timsort: merges the already sorted runs
        _remember(self.entries, merged, cache_rows)
        return id_from_hashes(self.rows, schema, merged)


def _remember(entries: list[BatchEntry], merged: np.ndarray, cache_rows: int) -> None:
    global _merged
    if len(merged) > cache_rows or any(not e.index_at for e in entries):
        return
    with _lock:
        _headers.clear()
        for e in entries:
            _headers[e.index_at] = e if e.hashes is None else BatchEntry(
                e.name, e.location, e.rows, e.columns, e.content_id, None, e.index_at)
        _merged = (frozenset(_headers), merged)


# ---- one batch ------------------------------------------------------------------------------
def _raw_key(dtype: Any) -> str:
    """A dtype as read, precise enough that equal keys concatenate to that same dtype (two
    categoricals with other categories concatenate to object)."""
    if isinstance(dtype, pd.CategoricalDtype):
        cats = hashlib.sha256(repr((list(dtype.categories), dtype.ordered)).encode()).hexdigest()[:16]
        return f"category[{cats}]"
    return str(dtype)


def entry_of(batch: Batch, location: str) -> BatchEntry:
    """Hash one batch as the whole table would hash its rows if every batch shares its dtypes."""
    canon = canonicalize(batch.frame)
    hashes = sorted_row_hashes(canon)
    columns = {c: [_raw_key(batch.frame[c].dtype), str(canon[c].dtype)] for c in canon.columns}
    return BatchEntry(batch.name, location, len(canon), columns,
                      id_from_hashes(len(canon), schema_of(canon), hashes), hashes)


def encode(entry: BatchEntry) -> bytes:
    """The `.rowindex` bytes of an entry with its hashes: magic, header length, JSON header, uint64 hashes."""
    header = json.dumps(entry.header(), sort_keys=False).encode()
    return MAGIC + len(header).to_bytes(8, "little") + header + entry.hashes.astype("<u8").tobytes()


def decode(data: bytes, location: str) -> BatchEntry:
    """The entry in `.rowindex` bytes (`encode`) of the batch at `location`; ValueError/KeyError if not."""
    if not data.startswith(MAGIC):
        raise ValueError("not a row index")
    start = len(MAGIC) + 8
    size = int.from_bytes(data[len(MAGIC):start], "little")
    header = json.loads(data[start:start + size])
    hashes = np.frombuffer(data, dtype="<u8", offset=start + size).astype(np.uint64)
    if len(hashes) != header["rows"]:
        raise ValueError(f"row index holds {len(hashes)} hashes for {header['rows']} rows")
    return BatchEntry(header["name"], location, header["rows"], header["columns"],
                      header["content_id"], hashes)


def _with_index_at(entry: BatchEntry, where: str) -> BatchEntry:
    return BatchEntry(entry.name, entry.location, entry.rows, entry.columns, entry.content_id,
                      entry.hashes, where)


# ---- where entries live -----------------------------------------------------------------------
def _listing(pattern: str, storage: Storage | None) -> list[tuple[str, int, str]]:
    if storage is not None:
        return storage.listing(pattern)
    return [(f, os.stat(f).st_size, str(os.stat(f).st_mtime_ns)) for f in sorted(glob.glob(pattern))]


def _key(location: str, size: int, version: str) -> str:
    """Changes whenever the file may have: size and version (mtime / ETag), plus locally the
    ctime and inode, which a rewrite changes even if it restores the mtime."""
    extra = ""
    if "://" not in location:
        st = os.stat(location)
        extra = f":{st.st_ctime_ns}:{st.st_ino}"
    name = location.rsplit("/", 1)[-1]
    return hashlib.sha256(f"{name}:{size}:{version}{extra}".encode()).hexdigest()[:20]


def index_location(location: str, key: str) -> str:
    """Where the row index of the batch at `location` lives: `<folder>/.index/<name>.<key>.rowindex`."""
    folder, name = location.rsplit("/", 1)
    return f"{folder}/{INDEX_DIR}/{name}.{key}{SUFFIX}"


def _stored(folders: set[str], storage: Storage | None) -> set[str]:
    """Every index file under the folders' `.index/` (one listing per folder)."""
    found: set[str] = set()
    for folder in folders:
        pattern = f"{folder}/{INDEX_DIR}/*{SUFFIX}"
        if storage is not None and "://" in folder:
            found |= set(storage.list_uris(pattern))
        else:
            found |= set(glob.glob(pattern))
    return found


def _read(location: str, storage: Storage | None) -> bytes:
    if storage is not None and "://" in location:
        return storage.read_bytes(location)
    return Path(location).read_bytes()


def _write(location: str, data: bytes, storage: Storage | None) -> None:
    """Write-once and atomic: a temporary name renamed into place locally, one PUT on S3. An
    index that cannot be written only costs the next run a re-read (a store that is down fails
    the run where it writes what is not a cache: the snapshot)."""
    if storage is not None and "://" in location:
        from mlops_pipeline.data.storage import StorageError

        try:
            storage.write_bytes_at(location, data)
        except StorageError:
            return
        return
    path = Path(location)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        return


# ---- the landing area -------------------------------------------------------------------------
def index_landing(
    pattern: str, fmt: str, storage: Storage | None = None,
    on_read: Callable[[Batch], None] | None = None,
) -> LandingIndex:
    """Every landed batch's entry, reading (and indexing) only batches not indexed yet.

    `on_read` sees each batch that had to be read, e.g. to check it while its frame is at hand.
    """
    files = _listing(pattern, storage)
    if not files:
        raise LandingError(f"no landed batches match {pattern!r} (run `mlops-pipeline land`)")
    stored = _stored({loc.rsplit("/", 1)[0] for loc, _, _ in files}, storage)
    stats = ReadStats()
    entries = []
    state = hashlib.sha256()
    wheres = [index_location(location, _key(location, size, version)) for location, size, version in files]
    with _lock:
        prior = _merged if _merged is not None and _merged[0] <= set(wheres) else None
        cached = {w: _headers[w] for w in wheres if prior is not None and w in prior[0]}
    for (location, size, _), where in zip(files, wheres, strict=True):
        state.update(f"{where};".encode())
        entry = cached.get(where)
        if entry is not None:
            entries.append(entry)
            continue
        if where in stored:
            data = _read(where, storage)
            stats.index_bytes += len(data)
            try:
                entry = decode(data, location)
            except (ValueError, KeyError, json.JSONDecodeError):
                entry = None  # a damaged index file: index the batch again
        if entry is None:
            batch = read_batch(location, fmt, storage)
            stats.batches_read.append(batch.name)
            stats.batch_bytes += size
            entry = entry_of(batch, location)
            _write(where, encode(entry), storage)
            if on_read is not None:
                on_read(batch)
            del batch
        entries.append(_with_index_at(entry, where))
    return LandingIndex(entries, stats, state.hexdigest(), prior)


# ---- per-batch check findings of one landing state -------------------------------------------
def _findings_location(index: LandingIndex, snapshot_id: str, checks_digest: str) -> str:
    key = hashlib.sha256(f"{index.fingerprint};{snapshot_id};{checks_digest}".encode()).hexdigest()[:24]
    folder = index.entries[0].location.rsplit("/", 1)[0]
    return f"{folder}/{INDEX_DIR}/findings-{key}.json"


def save_findings(index: LandingIndex, snapshot_id: str, checks_digest: str, findings: dict,
                  storage: Storage | None = None) -> None:
    """Keep what the per-batch checks found on exactly these files (`checks_digest` names the
    contract, the spec and the checks' code), so a run on an unchanged landing need not re-read it."""
    from dataclasses import asdict

    doc = {check: [asdict(f) for f in found] for check, found in findings.items()}
    _write(_findings_location(index, snapshot_id, checks_digest), json.dumps(doc).encode(), storage)


def load_findings(index: LandingIndex, snapshot_id: str, checks_digest: str,
                  storage: Storage | None = None) -> dict | None:
    """The findings `save_findings` kept for this landing state, or None."""
    from mlops_pipeline.data.batch_checks import Finding

    where = _findings_location(index, snapshot_id, checks_digest)
    exists = storage.exists(where) if storage is not None else Path(where).exists()
    if not exists:
        return None
    try:
        doc = json.loads(_read(where, storage))
        return {check: [Finding(**{**f, "examples": tuple(f["examples"])}) for f in found]
                for check, found in doc.items()}
    except (ValueError, KeyError, TypeError):
        return None


def landing_content_id(
    pattern: str, fmt: str, storage: Storage | None = None,
    log: Callable[[str], None] | None = None, cache_rows: int = CACHE_ROWS,
) -> tuple[str, LandingIndex]:
    """The landing area's `content_id`, from the index when the batches share their dtypes, else
    from the whole table (said through `log`); `cache_rows` as in `LandingIndex.snapshot_id`."""
    index = index_landing(pattern, fmt, storage)
    cid = index.snapshot_id(cache_rows)
    if cid is None:
        if log is not None:
            log(f"snapshot id from the whole landing area (not the batch index): {index.mismatch()}")
        cid = content_id(read_landing(pattern, fmt, storage))
        index.stats.full_read = True
        index.stats.batch_bytes += sum(size for _, size, _ in _listing(pattern, storage))
    return cid, index
