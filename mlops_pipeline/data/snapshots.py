"""Content addressing: the id of a snapshot is a hash of what is in it, not of how it was stored.

The same rows give the same id whatever the file order, the split into batches, the row order or
the Parquet writer settings, so "which data trained this model?" has one exact answer. Each row is
hashed from its values (pandas' `hash_pandas_object` over sorted columns, index excluded), the row
hashes are sorted, and the sorted hashes, the row count and the schema (names and dtypes) are fed to
SHA-256. Sorting rather than summing keeps the id as strong as SHA-256 over the multiset of rows.
"""

from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mlops_pipeline.data.storage import Storage


class LandingError(RuntimeError):
    """The landing area cannot be read into one table (missing, empty, or inconsistent batches)."""


def landed_files(pattern: str) -> list[Path]:
    """Local files matching the glob `pattern`, sorted by path (empty when none match)."""
    return sorted(Path(p) for p in glob.glob(pattern))


def _files(pattern: str, storage: Storage | None) -> list[str]:
    """Landed batches as paths or `s3://` URIs: through the storage resource when one is given."""
    return storage.list_uris(pattern) if storage is not None else [str(p) for p in landed_files(pattern)]


@dataclass(frozen=True)
class Batch:
    """One landed file: its name, its rows as read, and when it landed (None when unknown)."""

    name: str
    frame: pd.DataFrame
    landed_at: pd.Timestamp | None = None


def read_batches(pattern: str, fmt: str, storage: Storage | None = None) -> list[Batch]:
    """Every landed batch on its own, as read; an unreadable file is named in the error.

    A timestamp pandas cannot hold in nanoseconds (a year past 2262) is refused here, naming the
    file and the column, instead of surfacing later as a raw `OutOfBoundsDatetime` from a concat.
    `landed_at` is the file's modification time (UTC, naive) for local files, None on S3.
    """
    files = _files(pattern, storage)
    if not files:
        raise LandingError(f"no landed batches match {pattern!r} (run `mlops-pipeline land`)")
    return [read_batch(f, fmt, storage) for f in files]


def read_batch(f: str, fmt: str, storage: Storage | None = None) -> Batch:
    """One landed file (a path or `s3://` URI) as `read_batches` reads each: same checks, same
    dtypes, so its row hashes are the ones the whole landing area would give it."""
    store_down: tuple[type[Exception], ...] = ()
    if storage is not None:
        from mlops_pipeline.data.storage import StorageError

        store_down = (StorageError,)
    try:
        frame = _read(f, fmt, storage)
    except store_down:
        raise  # the store is down: say so, not "this file is bad"
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise LandingError(f"cannot read landed batch {f}: {exc}") from exc
    _refuse_out_of_bounds_times(f, frame)
    landed = None
    if "://" not in f:
        landed = pd.Timestamp(Path(f).stat().st_mtime_ns, unit="ns")
    return Batch(f.rsplit("/", 1)[-1], frame, landed)


def _refuse_out_of_bounds_times(f: str, frame: pd.DataFrame) -> None:
    lo, hi = pd.Timestamp.min, pd.Timestamp.max
    for col in frame.columns:
        s = frame[col]
        if not pd.api.types.is_datetime64_any_dtype(s) or str(s.dtype).startswith("datetime64[ns"):
            continue
        values = s.dt.tz_localize(None) if getattr(s.dt, "tz", None) is not None else s
        bad = values[values.notna() & ((values < lo.as_unit(values.dt.unit))
                                       | (values > hi.as_unit(values.dt.unit)))]
        if len(bad):
            raise LandingError(
                f"landed batch {f}: column '{col}' has {len(bad)} timestamp(s) outside the years "
                f"1677-2262 that pandas can represent, e.g. {[str(v) for v in bad.head(3)]}; "
                "fix or remove the batch"
            )
        frame[col] = s.astype(str(s.dtype).replace(f"[{values.dt.unit}", "[ns"))


def read_landing(pattern: str, fmt: str, storage: Storage | None = None) -> pd.DataFrame:
    """Concatenate every landed batch (`read_batches`); an unreadable file is named in the error.

    Batches may differ in columns (a feedback batch has no post-departure columns, say): a column a
    batch lacks is null for its rows, and the data contract decides whether that is acceptable —
    a missing feature fails the contract's checks by name, downstream, with nothing trained.
    `pattern` may be an `s3://` glob when `storage` (which holds the S3 client) is given.
    """
    return concat_batches(read_batches(pattern, fmt, storage))


def concat_batches(batches: list[Batch]) -> pd.DataFrame:
    """The batches' rows in one frame, in batch order with a fresh index; a column a batch lacks is null."""
    return pd.concat([b.frame for b in batches], ignore_index=True)


def _read(f: str, fmt: str, storage: Storage | None, columns: list[str] | None = None):
    if storage is not None:
        return storage.read_table(f, fmt, columns)
    return pd.read_parquet(f, columns=columns) if fmt == "parquet" else pd.read_csv(f, usecols=columns)


def newest_batch(
    pattern: str, fmt: str, time_column: str | None, storage: Storage | None = None
) -> tuple[str, pd.DataFrame]:
    """What production is seeing now: the landed batch with the latest timestamps, or, without a
    time column, the most recently landed one (latest modification time for local files, the last
    name for objects in S3, whose listing carries no landing time)."""
    files = _files(pattern, storage)
    if not files:
        raise LandingError(f"no landed batches match {pattern!r}")

    if time_column:
        def newest(f: str):
            return pd.to_datetime(_read(f, fmt, storage, [time_column])[time_column]).max()
    else:
        def newest(f: str):
            return (0, f) if "://" in f else (Path(f).stat().st_mtime_ns, f)

    latest = max(files, key=newest)
    return latest.rsplit("/", 1)[-1], _read(latest, fmt, storage)


def missing_columns_by_batch(
    pattern: str, fmt: str, storage: Storage | None = None
) -> dict[str, list[str]]:
    """Which batch lacks which column that another batch has (for the snapshot's metadata)."""
    import io

    import pyarrow.parquet as pq

    def names(f: str) -> list[str]:
        src = io.BytesIO(storage.read_bytes(f)) if storage is not None and "://" in f else f
        return pq.read_schema(src).names if fmt == "parquet" else list(pd.read_csv(src, nrows=0).columns)

    columns = {f.rsplit("/", 1)[-1]: names(f) for f in _files(pattern, storage)}
    union = set().union(*columns.values()) if columns else set()
    return {name: sorted(union - set(cols)) for name, cols in columns.items() if union - set(cols)}


def canonicalize(df: pd.DataFrame) -> pd.DataFrame:
    """Sorted columns, a fresh index and one dtype per kind, so equal data hashes equally."""
    out = df[sorted(df.columns)].reset_index(drop=True)
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_bool_dtype(s):
            out[col] = s.astype("bool")
        elif pd.api.types.is_integer_dtype(s) and not s.hasnans:
            out[col] = s.astype("int64")
        elif pd.api.types.is_numeric_dtype(s):
            out[col] = s.astype("float64")
        elif pd.api.types.is_datetime64_any_dtype(s):
            out[col] = s.astype("datetime64[ns]") if s.dt.tz is None else s.dt.tz_convert("UTC")
        else:
            values = s.astype("object").where(s.notna(), None)
            if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
                # A batch that sent numbers as text leaves a mixed column: store it as text, and
                # let the contract check say which column broke.
                values = values.map(lambda v: v if v is None else str(v))
            out[col] = values
    return out


def content_id(df: pd.DataFrame) -> str:
    """SHA-256 of the canonical multiset of rows plus the schema (see the module docstring)."""
    canon = canonicalize(df)
    return id_from_hashes(len(canon), schema_of(canon), sorted_row_hashes(canon))


def sorted_row_hashes(canon: pd.DataFrame) -> np.ndarray:
    """The sorted uint64 hash of each row of a `canonicalize`d frame (what `content_id` feeds)."""
    return np.sort(pd.util.hash_pandas_object(canon, index=False).to_numpy(np.uint64))


def schema_of(canon: pd.DataFrame) -> str:
    """Names and dtypes of a `canonicalize`d frame, as `content_id` hashes them."""
    return ";".join(f"{c}:{canon[c].dtype}" for c in canon.columns)


def id_from_hashes(rows: int, schema: str, sorted_hashes: np.ndarray) -> str:
    """`content_id` from its parts, so an id can be derived from row hashes stored per batch
    (`mlops_pipeline.data.batch_index`) without re-reading the rows."""
    h = hashlib.sha256()
    h.update(f"rows={rows};{schema}".encode())
    h.update(np.ascontiguousarray(sorted_hashes, dtype=np.uint64).tobytes())
    return h.hexdigest()


#: Rows per chunk when a stored snapshot is re-hashed: small, so the check holds about what taking
#: the snapshot held (a landed batch or a few); hashing is vectorized per chunk, so little is lost.
HASH_CHUNK_ROWS = 100_000


def stored_content_id(storage: Storage, snapshot_id: str, chunk_rows: int = HASH_CHUNK_ROWS) -> str:
    """`content_id(storage.read_snapshot(snapshot_id))`, computed a chunk of the stored table at a
    time (`tables.iter_table`), so checking a snapshot's integrity holds one chunk and 8 bytes per
    row (its hash), not the table. Each chunk is hashed under the dtypes the whole table would have:
    when chunks disagree (an integer column with nulls in some chunks only, as only an altered file
    has), a second pass hashes them under the whole table's dtypes."""
    from mlops_pipeline.data import tables

    uri = storage.snapshot_uri(snapshot_id)
    if not storage.exists(uri):
        raise FileNotFoundError(f"snapshot {snapshot_id} not found at {uri}")
    rows = tables.parquet_metadata(storage, uri).num_rows  # the footer alone, also on S3
    if rows == 0:  # no chunk to take the schema from; an empty table is cheap to read whole
        return content_id(storage.read_snapshot(snapshot_id))
    hashes, dtypes = _hash_chunks(tables.iter_table(storage, uri, chunk_rows=chunk_rows), rows, {})
    mixed = {c: ("float64" if found <= {"int64", "float64"} else "object")
             for c, found in dtypes.items() if len(found) > 1}
    if mixed:
        hashes, dtypes = _hash_chunks(tables.iter_table(storage, uri, chunk_rows=chunk_rows), rows, mixed)
    hashes.sort()
    schema = ";".join(f"{c}:{next(iter(found))}" for c, found in dtypes.items())
    return id_from_hashes(rows, schema, hashes)


def _hash_chunks(chunks, rows: int, cast: dict[str, str]) -> tuple[np.ndarray, dict[str, set[str]]]:
    """Every chunk's row hashes (unsorted, in one preallocated array) and each canonical column's
    dtypes over the chunks, the columns in `cast` converted to the given dtype first."""
    out = np.empty(rows, np.uint64)
    dtypes: dict[str, set[str]] = {}
    at = 0
    for chunk in chunks:
        for col, dtype in cast.items():
            chunk[col] = chunk[col].astype(dtype)
        canon = canonicalize(chunk)
        del chunk
        for c in canon.columns:
            dtypes.setdefault(c, set()).add(str(canon[c].dtype))
        out[at:at + len(canon)] = pd.util.hash_pandas_object(canon, index=False).to_numpy(np.uint64)
        at += len(canon)
    if at != rows:
        raise ValueError(f"read {at} rows of a table whose footer says {rows}")
    return out, dtypes


def time_range(df: pd.DataFrame, time_column: str) -> tuple[str, str]:
    """First and last timestamp of `time_column`, as strings, for the snapshot's metadata."""
    t = pd.to_datetime(df[time_column])
    return str(t.min()), str(t.max())
