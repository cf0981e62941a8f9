"""The prediction store: every prediction the serving process answers (or shadows), with its label.

It is the loop's record of what production saw and said, so monitoring, label-join and retraining
read it instead of scraping logs.

The unit of capture is the scored request, not the record: one row of `prediction_batches` per
request and role (champion or canary answer, challenger's shadow answer) holds the request's
records column-wise: the features as one LZ4-compressed JSON array, predictions and
probabilities as float64 arrays. A classifier's prediction is stored as the index of its class in
the version's class list (`classes`, JSON, so string, int and bool classes round-trip in their own
type); `probability` is the positive-class probability (binary) or the predicted class's
(multi-class), and a multi-class answer keeps every class's probability (`probabilities`, an
(n, k) float64 matrix). Labels are stored as JSON text, in the dataset's own label type.
Why one row per request: a row per record costs SQLite
~3 us of B-tree inserts and bound parameters, 37 ms for one 10k-record request (as much CPU as
half the model), where one row per request costs ~3 ms whatever its size; every reader wants
windows of records anyway, and `read_window` gives one row per record exactly as before. Labels
live in `prediction_labels`, keyed by (batch, record), so a label never rewrites a captured row and
a shadow answer committed after its label is labelled all the same. Compression (LZ4, through
pyarrow): JSON records repeat their keys and much of their values, so a 10k-record request's 2.6 MB
of features are stored as ~0.2 MB for ~1 ms of CPU, where writing the 2.6 MB (twice, with WAL)
cost ~6 ms of CPU and system time per request (measured) and the store grew 15x faster.

Request ids name their record: a request id is the request's batch id (a time-ordered UUIDv7, its
last 24 bits zero) with the record's index in those bits. So feedback finds its row by primary key
with no per-record index, ids sort by time and then by record, and they are 32 hex characters
like any UUID.

Embedded default: SQLite in WAL mode at `<data_dir>/predictions/predictions.db` (readers never block
the writer, so a Dagster asset can read while the server writes). Production: any SQLAlchemy URL,
e.g. `postgresql+psycopg2://...`. Durability is the writer's job (`synchronous=FULL` on SQLite, a
committed transaction on Postgres); the serving process amortises it with group commits.

This module imports only SQLAlchemy, pandas, msgspec and dagster (no MLflow, no scikit-learn), so a
Dagster code location can import it cheaply.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any

import dagster as dg
import msgspec
import numpy as np
import pandas as pd
from pydantic import PrivateAttr
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError

from mlops_pipeline.spec import data_dir

ROLES = ("champion", "canary", "shadow")
#: Roles whose prediction was returned to a client (shadow answers never are).
SERVED_ROLES = ("champion", "canary")

#: The low bits of a request id that number the records of its batch.
RECORD_BITS = 24
MAX_BATCH_RECORDS = 1 << RECORD_BITS
_RECORD_HEX = RECORD_BITS // 4

metadata = MetaData()

batches_table = Table(
    "prediction_batches",
    metadata,
    Column("batch_id", String(32), primary_key=True,
           comment="The HTTP request: a UUIDv7 (hex) whose low 24 bits are zero."),
    Column("role", String(16), primary_key=True, comment="champion | canary | shadow"),
    Column("ts", DateTime(timezone=True), nullable=False, comment="UTC time the batch was scored."),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("records", Integer, nullable=False, comment="Records in the request."),
    Column("latency_ms", Float, nullable=False, comment="Server time from receipt to prediction."),
    Column("features", LargeBinary, nullable=False,
           comment="LZ4-compressed UTF-8 JSON array: each record's feature values (and key fields)."),
    Column("features_size", Integer, nullable=False, comment="Uncompressed bytes of `features`."),
    Column("prediction", LargeBinary, nullable=False,
           comment="float64 little-endian, one per record: class index into `classes` "
           "(classification) or value."),
    Column("probability", LargeBinary, nullable=True,
           comment="float64 little-endian, one per record: positive-class probability (binary), "
           "predicted class's probability (multi-class)."),
    Column("classes", Text, nullable=True,
           comment="JSON array: the version's classes in probability-column order (classification)."),
    Column("positive", Integer, nullable=True, comment="Index of the positive class (binary)."),
    Column("probabilities", LargeBinary, nullable=True,
           comment="float64 little-endian, records x classes, row-major (multi-class only)."),
    Index("ix_prediction_batches_ts", "ts"),
)

labels_table = Table(
    "prediction_labels",
    metadata,
    Column("batch_id", String(32), primary_key=True),
    Column("record", Integer, primary_key=True, comment="The record's index in its batch."),
    Column("label", Text, nullable=False,
           comment="Ground truth from POST /feedback, as JSON in the dataset's own label type."),
    Column("label_ts", DateTime(timezone=True), nullable=False),
)

#: What `read_window` and `get` return: one row per (record, role).
COLUMNS = ["request_id", "role", "ts", "batch_id", "model_name", "model_version", "features",
           "prediction", "probability", "latency_ms", "label", "label_ts"]
#: Added by `read_window(..., probabilities=True)`: each record's {class: probability}.
PROBABILITIES = "probabilities"
_BATCH_INSERT = [c.name for c in batches_table.columns]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode


# ---- request ids ------------------------------------------------------------------------------

def new_batch_id() -> str:
    """A time-ordered batch id: UUIDv7 layout (48-bit Unix milliseconds, version 7, random bits,
    RFC 9562 variant) with the low 24 bits zero, left for the record index.

    Time-ordered because the batch id leads the primary key: random ids land all over the B-tree,
    so every insert and WAL checkpoint touches pages everywhere; time-ordered ids append.
    """
    raw = bytearray(os.urandom(16))
    raw[:6] = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    raw[13:] = b"\0\0\0"
    return raw.hex()


_index_hex: list[str] = []


def request_ids(batch_id: str, n: int) -> list[str]:
    """The request ids of a batch's n records (the batch id's prefix + the record index).

    The index suffixes are formatted once and reused (a 10k-record answer needs 10k ids)."""
    if n > MAX_BATCH_RECORDS:
        raise ValueError(f"a batch holds at most {MAX_BATCH_RECORDS} records, not {n}")
    global _index_hex
    table = _index_hex
    if n > len(table):  # rebuilt, then rebound in one step: threads never see a partial table
        table = _index_hex = [f"{i:06x}" for i in range(max(n, 1024))]
    return list(map(batch_id[:-_RECORD_HEX].__add__, table[:n]))


def parse_request_id(request_id: str) -> tuple[str, int] | None:
    """(batch id, record index) of a request id; None for anything that is not one."""
    if not isinstance(request_id, str) or len(request_id) != 32:
        return None
    try:
        record = int(request_id[-_RECORD_HEX:], 16)
        int(request_id, 16)
    except ValueError:
        return None
    return request_id[:-_RECORD_HEX] + "0" * _RECORD_HEX, record


# ---- what the server captures -----------------------------------------------------------------

@dataclass(frozen=True)
class PredictionBatch:
    """The predictions of one request (or one shadow job), column-wise, features already JSON.

    `features` is the UTF-8 JSON array of the records' feature objects (the server encodes its
    typed records in one call); `from_records` builds one from plain dicts.
    """

    batch_id: str
    role: str
    ts: datetime
    model_name: str
    model_version: str
    features: bytes
    prediction: Sequence[Any] | np.ndarray  # class index (with `classes`) or value
    probability: Sequence[Any] | np.ndarray | None
    latency_ms: float
    classes: tuple | None = None  # the model's classes (classification)
    positive: int | None = None  # index of the positive class (binary)
    probabilities: np.ndarray | None = None  # (n, k), multi-class only

    def __len__(self) -> int:
        return len(self.prediction)

    @property
    def request_ids(self) -> list[str]:
        return request_ids(self.batch_id, len(self))

    @classmethod
    def from_records(cls, features: Sequence[Mapping[str, Any]], prediction: Sequence[Any],
                     probability: Sequence[Any] | None = None, *, role: str = "champion",
                     ts: datetime | None = None, model_name: str = "model", model_version: str = "1",
                     latency_ms: float = 0.0, batch_id: str | None = None,
                     classes: Sequence[Any] | None = None, positive: int | None = None,
                     probabilities: np.ndarray | None = None) -> PredictionBatch:
        """With `classes`, `prediction` holds class labels (mapped to their index here)."""
        if classes is not None:
            classes = tuple(classes)
            prediction = pd.Index(list(classes)).get_indexer(list(prediction)).astype(np.float64)
        return cls(batch_id or new_batch_id(), role, ts or datetime.now(UTC), model_name, model_version,
                   _encode(list(features)), prediction, probability, latency_ms, classes, positive,
                   probabilities)


_F8 = np.dtype("<f8")
_CODEC = "lz4"


def _compress(data: bytes) -> bytes:
    import pyarrow as pa

    return pa.compress(data, codec=_CODEC, asbytes=True)


def _decompress(data: bytes, size: int) -> bytes:
    import pyarrow as pa

    return pa.decompress(data, decompressed_size=size, codec=_CODEC, asbytes=True)


def _float64_bytes(values: Sequence[Any] | np.ndarray | None, n: int) -> bytes | None:
    """float64 little-endian bytes (None as NaN): one copy, no per-value conversion."""
    if values is None:
        return None
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        out = values.astype(_F8, copy=False)
    else:
        out = np.array([np.nan if v is None else float(v) for v in values], dtype=_F8)
    if out.shape != (n,):
        raise ValueError(f"{out.size} values for {n} records")
    return out.tobytes()


def _classes_json(classes: tuple) -> str:
    return _encode([v.item() if isinstance(v, np.generic) else v for v in classes]).decode()


def _matrix_bytes(matrix: np.ndarray | None, n: int, classes: tuple | None) -> bytes | None:
    if matrix is None:
        return None
    out = np.ascontiguousarray(matrix, dtype=_F8)
    k = len(classes) if classes is not None else -1
    if out.shape != (n, k):
        raise ValueError(f"probabilities of shape {out.shape} for {n} records and {k} classes")
    return out.tobytes()


@dataclass(frozen=True)
class _InsertPlan:
    sql: str
    mode: str  # "multirow" (SQLite), "execute_values" (psycopg2), "sqlalchemy"
    processors: list[Callable[[Any], Any] | None]
    row_sql: str = ""  # "(?, ?, ...)": one row of a multi-row VALUES


def default_url() -> str:
    path = data_dir() / "predictions" / "predictions.db"
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers (monitoring assets, tests) do not block the writer. synchronous=FULL: a committed
    # transaction survives power loss, which is what "an acknowledged prediction is never lost"
    # needs; group commit makes the extra fsync cheap per prediction. busy_timeout: serving
    # workers (one writer each) take turns instead of failing.
    # 16 KiB pages (only a new, empty database takes it; before WAL mode, which fixes it): a
    # 10k-record capture is ~2.6 MB, and SQLite writes every page as its own WAL frame and system
    # call; with 4 KiB pages insert + commit took 6.4 ms of CPU, with 16 KiB 3.0 ms (measured).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA page_size=16384")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


#: Execution option of a connection that will write: its SQLite transaction starts IMMEDIATE.
_WRITES = "mlops_writes"


def _sqlite_begin(conn: Any) -> None:
    # SQLAlchemy's recipe for pysqlite (driver autocommit off, BEGIN emitted here), so a writing
    # transaction takes SQLite's write lock when it starts: a writer then waits (busy_timeout) for
    # another process's writer, instead of failing with SQLITE_BUSY when a transaction that began
    # by reading (feedback: look up, then upsert) tries to write after another process committed.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITES) else "BEGIN")


class PredictionStore:
    """Write and read captured predictions through SQLAlchemy; thread-safe (one engine, a pool)."""

    def __init__(self, url: str | None = None, engine: Engine | None = None):
        self.url = url or default_url()
        if engine is None:
            kwargs: dict[str, Any] = {}
            sqlite = self.url.startswith("sqlite")
            if sqlite:
                db = self.url.split("///", 1)[-1]
                if db and db != ":memory:":
                    Path(db).parent.mkdir(parents=True, exist_ok=True)
                kwargs["connect_args"] = {"check_same_thread": False, "isolation_level": None}
            engine = create_engine(self.url, **kwargs)
            if sqlite:
                event.listen(engine, "connect", _sqlite_pragmas)
                event.listen(engine, "begin", _sqlite_begin)
        self.engine = engine
        self._insert_plan: _InsertPlan | None = None
        self._chunk_rows: int | None = None
        try:
            metadata.create_all(self.engine)
        except DBAPIError:  # another process created them between the check and the CREATE
            metadata.create_all(self.engine)
        _migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---- writes ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A writing transaction (committed on exit, rolled back on error)."""
        with self.engine.connect() as conn:
            conn.execution_options(**{_WRITES: True})
            with conn.begin():
                yield conn

    def write(self, batches: Sequence[PredictionBatch]) -> int:
        """Insert batches in one transaction: committed (durable) when this returns; the number of
        records written."""
        if not batches:
            return 0
        with self.transaction() as conn:
            return self.insert(conn, batches)

    def _plan(self) -> _InsertPlan:
        # One statement per commit, however many batches: on SQLite a multi-row INSERT, because
        # executemany releases and re-takes the GIL around every row, and next to a busy thread each
        # re-take waits for the switch interval (5 ms); psycopg2's execute_values is multi-row too.
        plan = self._insert_plan
        if plan is None:
            dialect = self.engine.dialect
            prep = dialect.identifier_preparer
            cols = ", ".join(prep.quote(c) for c in _BATCH_INSERT)
            table = prep.format_table(batches_table)
            processors = [batches_table.c[c].type.dialect_impl(dialect).bind_processor(dialect)
                          for c in _BATCH_INSERT]
            if dialect.name == "postgresql" and dialect.driver == "psycopg2":
                plan = _InsertPlan(f"INSERT INTO {table} ({cols}) VALUES %s", "execute_values", processors)
            elif dialect.name == "sqlite" and dialect.paramstyle == "qmark":
                plan = _InsertPlan(f"INSERT INTO {table} ({cols}) VALUES ", "multirow", processors,
                                   "(" + ", ".join("?" * len(_BATCH_INSERT)) + ")")
            else:
                plan = _InsertPlan("", "sqlalchemy", processors)
            self._insert_plan = plan
        return plan

    @staticmethod
    def _values(b: PredictionBatch) -> dict[str, Any]:
        n = len(b)
        if n > MAX_BATCH_RECORDS:
            raise ValueError(f"a batch holds at most {MAX_BATCH_RECORDS} records, not {n}")
        return {
            "batch_id": b.batch_id, "role": b.role, "ts": b.ts, "model_name": b.model_name,
            "model_version": str(b.model_version), "records": n, "latency_ms": float(b.latency_ms),
            "features": _compress(b.features), "features_size": len(b.features),
            "prediction": _float64_bytes(b.prediction, n),
            "probability": _float64_bytes(b.probability, n),
            "classes": None if b.classes is None else _classes_json(b.classes),
            "positive": None if b.positive is None else int(b.positive),
            "probabilities": _matrix_bytes(b.probabilities, n, b.classes),
        }

    def params(self, batches: Sequence[PredictionBatch]) -> list[tuple[Any, ...]]:
        """Positional parameters in column order, bind-processed for this dialect."""
        procs = self._plan().processors
        out = []
        for b in batches:
            values = self._values(b)
            out.append(tuple(v if f is None or v is None else f(v)
                             for v, f in zip((values[c] for c in _BATCH_INSERT), procs, strict=True)))
        return out

    def _multirow_chunk(self, conn: Any) -> int:
        """Rows per statement within SQLite's bound-variable limit (999 before 3.32)."""
        if self._chunk_rows is None:
            import sqlite3

            limit = 999
            with contextlib.suppress(Exception):
                limit = conn.connection.dbapi_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self._chunk_rows = max(1, min(500, limit // len(_BATCH_INSERT)))
        return self._chunk_rows

    def insert(self, conn: Any, batches: Sequence[PredictionBatch]) -> int:
        """Insert within the caller's transaction (the group-commit writer commits many at once);
        returns the number of records."""
        if not batches:
            return 0
        plan = self._plan()
        records = sum(len(b) for b in batches)
        if plan.mode == "sqlalchemy":
            conn.execute(insert(batches_table), [self._values(b) for b in batches])
            return records
        params = self.params(batches)
        if plan.mode == "multirow":  # errors are wrapped as SQLAlchemy's, as through insert()
            chunk = self._multirow_chunk(conn)
            for i in range(0, len(params), chunk):
                part = params[i:i + chunk]
                conn.exec_driver_sql(plan.sql + ", ".join([plan.row_sql] * len(part)),
                                     tuple(chain.from_iterable(part)))
            return records
        from psycopg2.extras import execute_values

        cursor = conn.connection.dbapi_connection.cursor()
        try:
            execute_values(cursor, plan.sql, params, page_size=500)
        except self.engine.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(plan.sql, None, exc, self.engine.dialect.loaded_dbapi.Error,
                                      dialect=self.engine.dialect) from exc
        finally:
            cursor.close()
        return records

    def set_label(self, request_id: str, label: Any, conn: Any = None) -> tuple[int, bool]:
        """Attach ground truth (a JSON scalar in the dataset's label type: "bad", 3, true, 27.0) to
        a record; returns (captured rows of that record, changed).

        The rows are the served answer plus any shadow answer. Idempotent: the same label again
        changes nothing (label_ts keeps the first time it was set); a different label replaces it
        (a corrected label). An id that names no captured record matches nothing.
        """
        if conn is None:
            with self.transaction() as c:
                return self.set_label(request_id, label, conn=c)
        parsed = parse_request_id(request_id)
        if parsed is None:
            return 0, False
        batch_id, record = parsed
        b, lab = batches_table, labels_table
        matched = conn.execute(
            select(func.count()).select_from(b).where(and_(b.c.batch_id == batch_id, b.c.records > record))
        ).scalar_one()
        if not matched:
            return 0, False
        label = _label_json(label)
        key = and_(lab.c.batch_id == batch_id, lab.c.record == record)
        current = conn.execute(select(lab.c.label).where(key)).first()
        if current is None:
            values = {"batch_id": batch_id, "record": record, "label": label, "label_ts": datetime.now(UTC)}
            dialect_insert = _upsert_insert(conn.dialect.name)
            if dialect_insert is not None:  # two replicas may label the same record at once
                upsert = dialect_insert(lab).values(**values)
                upsert = upsert.on_conflict_do_update(
                    index_elements=[lab.c.batch_id, lab.c.record],
                    set_={"label": upsert.excluded.label, "label_ts": upsert.excluded.label_ts},
                    where=lab.c.label != upsert.excluded.label,
                )
                return int(matched), bool(conn.execute(upsert).rowcount)
            conn.execute(insert(lab).values(**values))
            return int(matched), True
        if _label_json(_label_value(current.label)) == label:
            return int(matched), False
        conn.execute(update(lab).where(key).values(label=label, label_ts=datetime.now(UTC)))
        return int(matched), True

    # ---- reads -------------------------------------------------------------------------------
    def count(self, roles: Iterable[str] | None = None) -> int:
        """Captured records (one per record and role)."""
        b = batches_table
        query = select(func.coalesce(func.sum(b.c.records), 0))
        if roles is not None:
            query = query.where(b.c.role.in_(list(roles)))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def read_window(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        roles: Iterable[str] | None = None,
        model_name: str | None = None,
        expand_features: bool = False,
        probabilities: bool = False,
    ) -> pd.DataFrame:
        """One row per captured record and role with `start <= ts < end` (UTC), oldest first (then
        by request id and role): what a daily partition reads.

        `expand_features=True` turns the features into one column per feature, named as the
        features themselves, so the frame can be validated against the data contract and fed to a
        drift report as is; otherwise `features` holds each record's JSON object. SQLite returns
        naive datetimes (UTC); Postgres returns aware ones.

        `prediction` is the class label in the dataset's own type (float64 when every class is a
        number, as for a 0/1 target) or the value; `label` likewise. `probabilities=True` adds a
        column of each record's {class: probability} (classification; None for regression).
        """
        b = batches_table
        where = []
        if start is not None:
            where.append(b.c.ts >= _utc(start))
        if end is not None:
            where.append(b.c.ts < _utc(end))
        if roles is not None:
            where.append(b.c.role.in_(list(roles)))
        if model_name is not None:
            where.append(b.c.model_name == model_name)
        query = select(b).where(*where).order_by(b.c.ts, b.c.batch_id, b.c.role)
        labels = select(labels_table).where(
            labels_table.c.batch_id.in_(select(b.c.batch_id).where(*where).distinct()))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            label_rows = conn.execute(labels).all() if rows else []
        return _explode(rows, label_rows, expand_features, probabilities)

    def get(self, request_id: str, probabilities: bool = False) -> pd.DataFrame:
        """Every captured row (served and shadow) of one record, in `read_window`'s columns."""
        parsed = parse_request_id(request_id)
        if parsed is None:
            return _explode([], [], False, probabilities)
        batch_id, record = parsed
        b, lab = batches_table, labels_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(b).where(and_(b.c.batch_id == batch_id, b.c.records > record))
                                .order_by(b.c.role)).all()
            label_rows = conn.execute(select(lab).where(and_(lab.c.batch_id == batch_id,
                                                             lab.c.record == record))).all()
        frame = _explode(rows, label_rows, False, probabilities)
        return frame[frame["request_id"] == request_id].reset_index(drop=True)


def _floats(rows: Sequence[Any], column: str, counts: np.ndarray) -> np.ndarray:
    """One float64 array of every batch's values in `column`, in order (NaN where a batch has none)."""
    parts = [bytes(getattr(r, column)) if getattr(r, column) is not None
             else np.full(int(n), np.nan, dtype=_F8).tobytes() for r, n in zip(rows, counts, strict=True)]
    out = np.frombuffer(b"".join(parts), dtype=_F8).astype(np.float64)
    if len(out) != int(counts.sum()):
        raise ValueError(f"{len(out)} stored {column} values for {int(counts.sum())} records")
    return out


def _label_json(label: Any) -> str:
    """A label as stored: JSON text of a scalar (numpy scalars as their Python value)."""
    return _encode(label.item() if isinstance(label, np.generic) else label).decode()


def _label_value(stored: Any) -> Any:
    """A stored label back in its own type (a store from before JSON labels holds floats)."""
    return _decode(stored) if isinstance(stored, str | bytes) else stored


def _numeric_or_object(values: list[Any] | np.ndarray) -> np.ndarray:
    """float64 when every value is a number (not a bool), else an object array of the values."""
    arr = np.asarray(values, dtype=object)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in pd.unique(arr)):
        return arr.astype(np.float64)
    return arr


def _class_labels(rows: Sequence[Any], counts: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Predictions as labels: a classifier's stored class index mapped through its batch's class
    list (one lookup per distinct class list, not per record); values pass through."""
    lists = [r.classes for r in rows]
    if all(c is None for c in lists):
        return index
    out = index.astype(object)
    numeric = True
    for text in {c for c in lists if c is not None}:
        labels = _decode(text)
        numeric = numeric and all(isinstance(v, int | float) and not isinstance(v, bool) for v in labels)
        mask = np.repeat(np.fromiter((c == text for c in lists), dtype=bool, count=len(lists)), counts)
        out[mask] = np.asarray(labels, dtype=object)[index[mask].astype(np.int64)]
    return out.astype(np.float64) if numeric else out


def _probability_dicts(rows: Sequence[Any], counts: np.ndarray, probability: np.ndarray) -> list[Any]:
    """Each record's {class: probability}: from the stored matrix (multi-class) or the positive
    class's probability (binary); None for regression."""
    out: list[Any] = []
    start = 0
    for r, n in zip(rows, counts.tolist(), strict=True):
        if r.classes is None:
            out.extend([None] * n)
        else:
            labels = _decode(r.classes)
            if r.probabilities is not None:
                matrix = np.frombuffer(bytes(r.probabilities), dtype=_F8).reshape(n, len(labels))
                out.extend(dict(zip(labels, row, strict=True)) for row in matrix.tolist())
            else:
                pos = 1 if r.positive is None else int(r.positive)
                pos_label, neg_label = labels[pos], labels[1 - pos]
                out.extend({neg_label: 1.0 - p, pos_label: p} for p in probability[start:start + n].tolist())
        start += n
    return out


def _explode(rows: Sequence[Any], label_rows: Sequence[Any], expand_features: bool,
             probabilities: bool = False) -> pd.DataFrame:
    """Batch rows -> one row per record (request ids derived), labels joined by (batch, record).

    Column-wise across batches (one `repeat` per batch-level column, one buffer per float array),
    so a day of single-record requests costs a few microseconds per request to read."""
    if not rows:
        return pd.DataFrame(columns=COLUMNS + ([PROBABILITIES] if probabilities else []))
    counts = np.array([int(r.records) for r in rows], dtype=np.int64)
    ids: list[str] = []
    features: list[Any] = []
    for r, n in zip(rows, counts.tolist(), strict=True):
        feats = _decode(_decompress(bytes(r.features), int(r.features_size)))
        if len(feats) != n:
            raise ValueError(f"batch {r.batch_id} ({r.role}) holds {len(feats)} feature rows for {n} records")
        features.extend(feats)
        ids.extend(request_ids(r.batch_id, n))

    def per_batch(column: str) -> np.ndarray:
        return np.repeat(np.array([getattr(r, column) for r in rows], dtype=object), counts)

    starts = np.repeat(np.cumsum(counts) - counts, counts)
    frame = pd.DataFrame({
        "request_id": ids,
        **{c: per_batch(c) for c in ("role", "batch_id", "model_name", "model_version")},
        "ts": pd.to_datetime(per_batch("ts").tolist()),
        "record": np.arange(int(counts.sum()), dtype=np.int64) - starts,
        "prediction": _class_labels(rows, counts, _floats(rows, "prediction", counts)),
        "probability": _floats(rows, "probability", counts),
        "latency_ms": np.repeat(np.array([r.latency_ms for r in rows], dtype=np.float64), counts),
    })
    labels = pd.DataFrame([tuple(x) for x in label_rows], columns=["batch_id", "record", "label", "label_ts"])
    labels["record"] = labels["record"].astype(np.int64)
    labels["label"] = _numeric_or_object([_label_value(v) for v in labels["label"]])
    frame = frame.merge(labels, on=["batch_id", "record"], how="left", sort=False)
    if len(label_rows):
        frame["label_ts"] = pd.to_datetime(frame["label_ts"].tolist())
    else:
        frame["label_ts"] = pd.Series([pd.NaT] * len(frame), dtype=frame["ts"].dtype)
    extra = []
    if probabilities:
        frame[PROBABILITIES] = _probability_dicts(rows, counts, frame["probability"].to_numpy())
        extra = [PROBABILITIES]
    if expand_features:
        feats = pd.DataFrame(features, index=frame.index)
        frame = pd.concat([frame, feats], axis=1)
        ordered = ([c for c in COLUMNS if c != "features"] + extra
                   + [c for c in feats.columns if c not in COLUMNS and c not in extra])
    else:
        frame["features"] = [_encode(f).decode() for f in features]
        ordered = COLUMNS + extra
    frame = frame.sort_values(["ts", "request_id", "role"], kind="stable").reset_index(drop=True)
    return frame[ordered]


def _migrate(engine: Engine) -> None:
    """Bring a store created before classes and JSON labels up to this schema: the new nullable
    columns are added; on Postgres the float label column becomes text (a float is valid JSON)."""
    from sqlalchemy import inspect, text

    inspector = inspect(engine)
    have = {c["name"]: c for c in inspector.get_columns(batches_table.name)}
    missing = [c for c in ("classes", "positive", "probabilities") if c not in have]
    label_type = {c["name"]: c for c in inspector.get_columns(labels_table.name)}["label"]["type"]
    alter_label = engine.dialect.name == "postgresql" and not isinstance(label_type, String)
    if not missing and not alter_label:
        return
    prep = engine.dialect.identifier_preparer
    for name in missing:
        kind = batches_table.c[name].type.compile(dialect=engine.dialect)
        # another process may add it meanwhile: then this one fails, harmlessly
        with contextlib.suppress(DBAPIError), engine.connect() as conn, conn.begin():
            conn.execute(text(f"ALTER TABLE {prep.format_table(batches_table)} "
                              f"ADD COLUMN {prep.quote(name)} {kind}"))
    with engine.connect() as conn, conn.begin():
        if alter_label:
            conn.execute(text(f"ALTER TABLE {prep.format_table(labels_table)} ALTER COLUMN label "
                              "TYPE TEXT USING label::text"))


def _upsert_insert(dialect: str) -> Callable[[Table], Any] | None:
    """The dialect's INSERT with ON CONFLICT (SQLite, Postgres); None elsewhere."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    return None


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


class PredictionStoreResource(dg.ConfigurableResource):
    """The prediction store for Dagster assets; empty `url` means the embedded SQLite default."""

    url: str = ""

    _store: Any = PrivateAttr(default=None)

    def store(self) -> PredictionStore:
        if self._store is None:
            self._store = PredictionStore(self.url or None)
        return self._store
