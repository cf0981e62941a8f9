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
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mlops_pipeline.resources.storage import StorageResource


class LandingError(RuntimeError):
    """The landing area cannot be read into one table (missing, empty, or inconsistent batches)."""


def landed_files(pattern: str) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(pattern))


def _files(pattern: str, storage: StorageResource | None) -> list[str]:
    """Landed batches as paths or `s3://` URIs: through the storage resource when one is given."""
    return storage.list_uris(pattern) if storage is not None else [str(p) for p in landed_files(pattern)]


def read_landing(pattern: str, fmt: str, storage: StorageResource | None = None) -> pd.DataFrame:
    """Concatenate every landed batch; an unreadable file is named in the error.

    Batches may differ in columns (a feedback batch has no post-departure columns, say): a column a
    batch lacks is null for its rows, and the data contract decides whether that is acceptable —
    a missing feature fails the contract's checks by name, downstream, with nothing trained.
    `pattern` may be an `s3://` glob when `storage` (which holds the S3 client) is given.
    """
    store_down: tuple[type[Exception], ...] = ()
    if storage is not None:  # plain files need no Dagster resource (nor its import)
        from mlops_pipeline.resources.storage import StorageError

        store_down = (StorageError,)
    files = _files(pattern, storage)
    if not files:
        raise LandingError(f"no landed batches match {pattern!r} (run `mlops-pipeline land`)")
    frames = []
    for f in files:
        try:
            frames.append(_read(f, fmt, storage))
        except store_down:
            raise  # the store is down: say so, not "this file is bad"
        except Exception as exc:  # noqa: BLE001 - re-raised with the file name
            raise LandingError(f"cannot read landed batch {f}: {exc}") from exc
    return pd.concat(frames, ignore_index=True)


def _read(f: str, fmt: str, storage: StorageResource | None, columns: list[str] | None = None):
    if storage is not None:
        return storage.read_table(f, fmt, columns)
    return pd.read_parquet(f, columns=columns) if fmt == "parquet" else pd.read_csv(f, usecols=columns)


def newest_batch(
    pattern: str, fmt: str, time_column: str, storage: StorageResource | None = None
) -> tuple[str, pd.DataFrame]:
    """The landed batch with the latest timestamps: what production is seeing now."""
    files = _files(pattern, storage)
    if not files:
        raise LandingError(f"no landed batches match {pattern!r}")

    def newest(f: str):
        return pd.to_datetime(_read(f, fmt, storage, [time_column])[time_column]).max()

    latest = max(files, key=newest)
    return latest.rsplit("/", 1)[-1], _read(latest, fmt, storage)


def missing_columns_by_batch(
    pattern: str, fmt: str, storage: StorageResource | None = None
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
    row_hashes = np.sort(pd.util.hash_pandas_object(canon, index=False).to_numpy(np.uint64))
    h = hashlib.sha256()
    schema = ";".join(f"{c}:{canon[c].dtype}" for c in canon.columns)
    h.update(f"rows={len(canon)};{schema}".encode())
    h.update(row_hashes.tobytes())
    return h.hexdigest()


def time_range(df: pd.DataFrame, time_column: str) -> tuple[str, str]:
    t = pd.to_datetime(df[time_column])
    return str(t.min()), str(t.max())
