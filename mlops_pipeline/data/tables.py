"""Stored Parquet tables a chunk at a time, through a `Storage` (a local directory or S3).

Steps over data bigger than memory (the snapshot, the prepared features, their checks) read a
table one record batch at a time and write one frame at a time, so a step holds one chunk, never
the table: memory stays bounded however many rows were landed. On S3 a table is streamed to a
temporary local file first (boto3's managed transfer, in parts), read from there and deleted, and a
written table is uploaded the same way: a run needs the data on no disk beforehand.

pyarrow does the Parquet work (`ParquetFile.iter_batches`, `ParquetWriter`); see the README's
library table.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from mlops_pipeline.data.storage import Storage

#: Rows per chunk when a step streams a table (a million rows of 30 columns is ~250 MB in pandas).
CHUNK_ROWS = 1_000_000


@contextmanager
def local_copy(storage: Storage, location: str) -> Iterator[str]:
    """A local path holding the table at `location`: the file itself, or for an `s3://` URI a
    temporary download removed on exit. FileNotFoundError names the location when nothing is there."""
    if not location.startswith("s3://"):
        if not Path(location).exists():
            raise FileNotFoundError(f"{location} not found in {storage.describe()}")
        yield location
        return
    from mlops_pipeline.data.storage import split_s3_uri

    if not storage.exists(location):
        raise FileNotFoundError(f"{location} not found in {storage.describe()}")
    bucket, key = split_s3_uri(location)
    with tempfile.TemporaryDirectory(prefix="mlops-table-") as tmp:
        path = os.path.join(tmp, key.rsplit("/", 1)[-1] or "table.parquet")
        with _transfer_errors(storage, "GET", location):
            storage.s3_client().download_file(bucket, key, path)
        yield path


@contextmanager
def _transfer_errors(storage: Storage, action: str, location: str) -> Iterator[None]:
    """`Storage._s3_errors` for boto3's managed transfers too, whose failures (a connection cut
    mid-upload, retries exhausted) are boto3's own exceptions: the error names the store and object."""
    from boto3.exceptions import Boto3Error

    from mlops_pipeline.data.storage import StorageError

    with storage._s3_errors(action, location):
        try:
            yield
        except Boto3Error as exc:
            raise StorageError(f"{storage.describe()} unreachable: {action} {location} failed: {exc}"
                               ) from exc


def row_count(storage: Storage, location: str) -> int:
    """Rows of a stored Parquet table, from its footer (no row is read locally)."""
    import pyarrow.parquet as pq

    with local_copy(storage, location) as path:
        return pq.ParquetFile(path).metadata.num_rows


def arrow_schema(storage: Storage, location: str) -> Any:
    """The stored table's Arrow schema (column names and types), from its footer."""
    import pyarrow.parquet as pq

    with local_copy(storage, location) as path:
        return pq.ParquetFile(path).schema_arrow


def parquet_metadata(storage: Storage, location: str) -> Any:
    """A Parquet file's footer (`pyarrow.parquet.FileMetaData`: rows, schema, row-group statistics)
    without reading its rows: on S3 by ranged GETs of the object's tail, not a download."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not location.startswith("s3://"):
        return pq.read_metadata(location)
    from mlops_pipeline.data.storage import split_s3_uri

    bucket, key = split_s3_uri(location)

    def tail(n: int) -> bytes:
        with storage._s3_errors("GET", location):
            return storage.s3_client().get_object(Bucket=bucket, Key=key, Range=f"bytes=-{n}")["Body"].read()

    data = tail(64 * 1024)
    if len(data) < 12 or data[-4:] != b"PAR1":
        raise ValueError(f"{location} is not a Parquet file")
    size = int.from_bytes(data[-8:-4], "little") + 8  # footer, its length, the magic
    if size > len(data):
        data = tail(size)
    return pq.read_metadata(pa.BufferReader(b"PAR1" + data[-size:]))


def iter_table(storage: Storage, location: str, columns: list[str] | None = None,
               chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The stored table in row order, `chunk_rows` (default `CHUNK_ROWS`) rows at a time (only
    `columns` when given), each chunk with the dtypes `pd.read_parquet` gives the whole table and
    a fresh index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with local_copy(storage, location) as path:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        for batch in pf.iter_batches(batch_size=chunk_rows or CHUNK_ROWS, columns=columns):
            # A Table (not the bare batch) carries the file's pandas metadata, so dtypes match.
            yield pa.Table.from_batches([batch], schema=batch.schema.with_metadata(schema.metadata)
                                        ).to_pandas()


class TableWriter:
    """Appends frames to one local Parquet file under a fixed Arrow schema (the first frame's unless
    given): a later frame whose columns cannot take that schema is refused, naming the columns."""

    def __init__(self, path: str, schema: Any = None):
        self.path, self.schema, self.rows = path, schema, 0
        self._writer: Any = None

    def write(self, df: pd.DataFrame) -> None:
        """Append `df`'s rows (its index is not stored)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.schema is not None and list(df.columns) != self.schema.names:
            missing = sorted(set(self.schema.names) - set(df.columns))
            extra = sorted(set(df.columns) - set(self.schema.names))
            if missing or extra:
                raise ValueError(f"a chunk's columns differ from the table's: missing {missing}, "
                                 f"extra {extra}")
            df = df[self.schema.names]
        schema = self.schema if self.schema is not None else _inferred_schema(df)
        try:
            table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"a chunk does not fit the table's schema: {exc}") from exc
        if self._writer is None:
            self.schema = table.schema
            self._writer = pq.ParquetWriter(self.path, self.schema)
        self._writer.write_table(table)
        self.rows += len(df)

    def close(self) -> None:
        """Finish the file (an empty table still gets a valid file when a schema was given)."""
        import pyarrow.parquet as pq

        if self._writer is None and self.schema is not None:
            self._writer = pq.ParquetWriter(self.path, self.schema)
        if self._writer is not None:
            self._writer.close()


def _inferred_schema(df: pd.DataFrame) -> Any:
    """The frame's Arrow schema, with a text column that holds only nulls typed as text (Arrow
    would type it `null`, and the next chunk's strings would not fit)."""
    import pyarrow as pa

    schema = pa.Schema.from_pandas(df, preserve_index=False)
    for i, f in enumerate(schema):
        if pa.types.is_null(f.type):
            schema = schema.set(i, pa.field(f.name, pa.string()))
    return schema


def write_once(storage: Storage, location: str, frames: Iterable[pd.DataFrame],
               schema: Any = None) -> tuple[bool, int]:
    """Write `frames`, in order, as one Parquet table at `location` unless one is stored there
    already: (created, rows). Written to a temporary local file first, then put in place in one
    step (a hard link locally, an upload on S3), so no reader ever sees half a table and a stored
    table is never replaced. Call `storage.exists` first to skip producing the frames at all."""
    if storage.exists(location):
        return False, 0
    is_s3 = location.startswith("s3://")
    folder = None if is_s3 else Path(location).parent
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".incoming-", suffix=".parquet")
    os.close(fd)
    try:
        writer = TableWriter(tmp, schema)
        try:
            for frame in frames:
                writer.write(frame)
        finally:
            writer.close()
        if writer.schema is None:
            raise ValueError(f"nothing to write at {location}: no chunk and no schema")
        if is_s3:
            return _upload_once(storage, tmp, location), writer.rows
        os.chmod(tmp, 0o444)
        try:
            os.link(tmp, location)
        except FileExistsError:
            return False, 0
        return True, writer.rows
    finally:
        os.unlink(tmp)


def _upload_once(storage: Storage, path: str, location: str) -> bool:
    from mlops_pipeline.data.storage import split_s3_uri

    if storage.exists(location):
        return False
    bucket, key = split_s3_uri(location)
    with _transfer_errors(storage, "PUT", location):
        storage.s3_client().upload_file(path, bucket, key,
                                        ExtraArgs={"ContentType": "application/vnd.apache.parquet"})
    return True
