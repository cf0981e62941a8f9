"""The prediction store: every prediction the serving process answers (or shadows), with its label.

It is the loop's record of what production saw and said, so monitoring, label-join and retraining
read it instead of scraping logs. One table, one row per (request id, role): the champion's (or the
canary's) answer and the challenger's shadow answer to the same record share the request id.

Embedded default: SQLite in WAL mode at `<data_dir>/predictions/predictions.db` (readers never block
the writer, so a Dagster asset can read while the server writes). Production: any SQLAlchemy URL,
e.g. `postgresql+psycopg://...`. Durability is the writer's job (`synchronous=FULL` on SQLite, a
committed transaction on Postgres); the serving process amortises it with group commits.

This module imports only SQLAlchemy, pandas and dagster (no MLflow, no scikit-learn), so a Dagster
code location can import it cheaply.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import PrivateAttr
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError

from mlops_pipeline.settings import data_dir

ROLES = ("champion", "canary", "shadow")
#: Roles whose prediction was returned to a client (shadow answers never are).
SERVED_ROLES = ("champion", "canary")

metadata = MetaData()

predictions_table = Table(
    "predictions",
    metadata,
    Column("request_id", String(64), primary_key=True, comment="One id per scored record."),
    Column("role", String(16), primary_key=True, comment="champion | canary | shadow"),
    Column("ts", DateTime(timezone=True), nullable=False, comment="UTC time the batch was scored."),
    Column("batch_id", String(64), nullable=False, comment="The HTTP request the record came in."),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("features", Text, nullable=False, comment="The record's feature values as JSON."),
    Column("prediction", Float, nullable=False, comment="Class (classification) or value."),
    Column("probability", Float, nullable=True, comment="Positive-class probability."),
    Column("latency_ms", Float, nullable=False, comment="Server time from receipt to prediction."),
    Column("label", Float, nullable=True, comment="Ground truth from POST /feedback."),
    Column("label_ts", DateTime(timezone=True), nullable=True),
    Index("ix_predictions_ts", "ts"),
    Index("ix_predictions_model", "model_name", "model_version"),
)

COLUMNS = [c.name for c in predictions_table.columns]
#: What a capture inserts (the label columns are only ever set by feedback).
INSERT_COLUMNS = COLUMNS[:10]


@dataclass(frozen=True)
class PredictionRow:
    """One captured prediction; `features` is stored as JSON text."""

    request_id: str
    role: str
    ts: datetime
    batch_id: str
    model_name: str
    model_version: str
    features: Mapping[str, Any]
    prediction: float
    probability: float | None
    latency_ms: float

    def as_params(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "role": self.role,
            "ts": self.ts,
            "batch_id": self.batch_id,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "features": json.dumps(self.features, separators=(",", ":"), default=str),
            "prediction": float(self.prediction),
            "probability": None if self.probability is None else float(self.probability),
            "latency_ms": float(self.latency_ms),
        }


@dataclass(frozen=True)
class PredictionBatch:
    """The predictions of one request (or one shadow job) column-wise, with the features already
    serialised: a 10k-record request is then ~5 list operations to capture instead of 10k row
    objects, dicts and `json.dumps` calls (which cost more than the model). What is stored is
    exactly what the equivalent `PredictionRow`s store (`rows()` gives them)."""

    request_ids: Sequence[str]
    role: str
    ts: datetime
    batch_id: str
    model_name: str
    model_version: str
    features: Sequence[str]  # one JSON object per row
    prediction: Sequence[float]
    probability: Sequence[float] | None
    latency_ms: float

    def __len__(self) -> int:
        return len(self.request_ids)

    def rows(self) -> list[PredictionRow]:
        proba = self.probability if self.probability is not None else repeat(None)
        return [
            PredictionRow(rid, self.role, self.ts, self.batch_id, self.model_name, self.model_version,
                          json.loads(f), float(p), None if q is None else float(q), self.latency_ms)
            for rid, f, p, q in zip(self.request_ids, self.features, self.prediction, proba, strict=False)
        ]


Capture = PredictionRow | PredictionBatch


def _floats(values: Sequence[Any] | None, n: int) -> list[float | None]:
    """One C call instead of n `float()` calls (None stays None, as in `PredictionRow`)."""
    if values is None:
        return [None] * n
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64).tolist()
    return [None if v is None else float(v) for v in values]


@dataclass(frozen=True)
class _InsertPlan:
    sql: str
    mode: str  # "multirow" (SQLite), "executemany" (DB-API), "execute_values" (psycopg2), "sqlalchemy"
    processors: list[Callable[[Any], Any] | None]
    row_sql: str = ""  # "(?, ?, ...)": one row of a multi-row VALUES


def default_url() -> str:
    path = data_dir() / "predictions" / "predictions.db"
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers (monitoring assets, tests) do not block the writer. synchronous=FULL: a committed
    # transaction survives power loss, which is what "an acknowledged prediction is never lost"
    # needs; group commit makes the extra fsync cheap per prediction.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class PredictionStore:
    """Write and read captured predictions through SQLAlchemy; thread-safe (one engine, a pool)."""

    def __init__(self, url: str | None = None, engine: Engine | None = None):
        self.url = url or default_url()
        if engine is None:
            kwargs: dict[str, Any] = {}
            if self.url.startswith("sqlite"):
                db = self.url.split("///", 1)[-1]
                if db and db != ":memory:":
                    Path(db).parent.mkdir(parents=True, exist_ok=True)
                kwargs["connect_args"] = {"check_same_thread": False}
            engine = create_engine(self.url, **kwargs)
            if self.url.startswith("sqlite"):
                event.listen(engine, "connect", _sqlite_pragmas)
        self.engine = engine
        self._insert_plan: _InsertPlan | None = None
        self._chunk_rows: int | None = None
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---- writes ------------------------------------------------------------------------------
    def write(self, rows: Sequence[Capture]) -> int:
        """Insert rows (and/or batches) in one transaction: committed (durable) when this returns."""
        if not rows:
            return 0
        with self.engine.begin() as conn:
            return self.insert(conn, rows)

    def _plan(self) -> _InsertPlan:
        # SQLAlchemy's executemany costs ~9 us per row here (a dict per row, bind processing,
        # parameter conversion): as much as the model per 10k rows. The DB-API driver takes
        # positional tuples directly; SQLAlchemy's own bind processors (e.g. SQLite's DATETIME
        # to text) are still applied, so the stored values are the same.
        # On SQLite, not executemany but multi-row INSERTs: sqlite3 releases and re-takes the GIL
        # around every row it steps, and while another thread runs Python each re-take waits for
        # the switch interval (5 ms): 10k rows took 47 s next to a busy thread, against 0.1 s as
        # a few multi-row statements (measured). psycopg2's execute_values is multi-row too.
        plan = self._insert_plan
        if plan is None:
            dialect = self.engine.dialect
            prep = dialect.identifier_preparer
            cols = ", ".join(prep.quote(c) for c in INSERT_COLUMNS)
            table = prep.format_table(predictions_table)
            processors = [predictions_table.c[c].type.dialect_impl(dialect).bind_processor(dialect)
                          for c in INSERT_COLUMNS]
            marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
            if dialect.name == "postgresql" and dialect.driver == "psycopg2":
                plan = _InsertPlan(f"INSERT INTO {table} ({cols}) VALUES %s", "execute_values", processors)
            elif dialect.name == "sqlite" and marker == "?":
                plan = _InsertPlan(f"INSERT INTO {table} ({cols}) VALUES ", "multirow", processors,
                                   "(" + ", ".join("?" * len(INSERT_COLUMNS)) + ")")
            elif marker is not None:
                values = ", ".join([marker] * len(INSERT_COLUMNS))
                plan = _InsertPlan(f"INSERT INTO {table} ({cols}) VALUES ({values})", "executemany",
                                   processors)
            else:
                plan = _InsertPlan("", "sqlalchemy", processors)
            self._insert_plan = plan
        return plan

    def params(self, items: Sequence[Capture]) -> list[tuple[Any, ...]]:
        """Positional parameters in `INSERT_COLUMNS` order, bind-processed for this dialect."""
        procs = self._plan().processors
        out: list[tuple[Any, ...]] = []
        loose: list[PredictionRow] = []
        for item in items:
            if isinstance(item, PredictionBatch):
                out.extend(self._batch_params(item, procs))
            else:
                loose.append(item)
        if loose:
            for p in (r.as_params() for r in loose):
                out.append(tuple(v if f is None or v is None else f(v)
                                 for v, f in zip((p[c] for c in INSERT_COLUMNS), procs, strict=True)))
        return out

    @staticmethod
    def _batch_params(b: PredictionBatch, procs: list[Callable[[Any], Any] | None]) -> Iterable[tuple]:
        n = len(b)

        def const(i: int, v: Any) -> Iterable[Any]:
            f = procs[i]
            return repeat(v if f is None or v is None else f(v), n)

        def each(i: int, values: list[Any]) -> list[Any]:
            f = procs[i]
            return values if f is None else [None if v is None else f(v) for v in values]

        request_ids = list(b.request_ids)
        features = list(b.features)
        if len(features) != n:
            raise ValueError(f"batch has {n} request ids but {len(features)} feature rows")
        return zip(
            each(0, request_ids), const(1, b.role), const(2, b.ts), const(3, b.batch_id),
            const(4, b.model_name), const(5, b.model_version), each(6, features),
            each(7, _floats(b.prediction, n)), each(8, _floats(b.probability, n)),
            const(9, float(b.latency_ms)), strict=False,
        )

    def _multirow_chunk(self, conn: Any) -> int:
        """Rows per statement within SQLite's bound-variable limit (32766 by default; 999 before
        3.32), at most 2000 (longer statements gain nothing)."""
        if self._chunk_rows is None:
            import sqlite3

            limit = 999
            with contextlib.suppress(Exception):
                limit = conn.connection.dbapi_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self._chunk_rows = max(1, min(2000, limit // len(INSERT_COLUMNS)))
        return self._chunk_rows

    def insert(self, conn: Any, items: Sequence[Capture]) -> int:
        """Insert within the caller's transaction (the group-commit writer commits many at once)."""
        plan = self._plan()
        if plan.mode == "sqlalchemy":
            rows = [r for item in items for r in (item.rows() if isinstance(item, PredictionBatch)
                                                   else [item])]
            if rows:
                conn.execute(predictions_table.insert(), [r.as_params() for r in rows])
            return len(rows)
        params = self.params(items)
        if not params:
            return 0
        if plan.mode == "multirow":  # errors are wrapped as SQLAlchemy's, as before
            chunk = self._multirow_chunk(conn)
            for i in range(0, len(params), chunk):
                part = params[i:i + chunk]
                conn.exec_driver_sql(plan.sql + ", ".join([plan.row_sql] * len(part)),
                                     tuple(chain.from_iterable(part)))
            return len(params)
        if plan.mode == "executemany":
            conn.exec_driver_sql(plan.sql, params)
            return len(params)
        from psycopg2.extras import execute_values

        dbapi = conn.connection.dbapi_connection
        cursor = dbapi.cursor()
        try:
            execute_values(cursor, plan.sql, params, page_size=1000)
        except self.engine.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(plan.sql, None, exc, self.engine.dialect.loaded_dbapi.Error,
                                      dialect=self.engine.dialect) from exc
        finally:
            cursor.close()
        return len(params)

    def set_label(self, request_id: str, label: float, conn: Any = None) -> tuple[int, bool]:
        """Attach ground truth to every row of `request_id`; returns (rows matched, changed).

        Idempotent: sending the same label again matches the rows but changes nothing (label_ts
        keeps the first time it was set). A different label replaces it (a corrected label).
        """
        if conn is None:
            with self.engine.begin() as c:
                return self.set_label(request_id, label, conn=c)
        t = predictions_table
        matched = conn.execute(
            select(func.count()).select_from(t).where(t.c.request_id == request_id)
        ).scalar_one()
        if not matched:
            return 0, False
        changed = conn.execute(
            update(t)
            .where(and_(t.c.request_id == request_id, (t.c.label.is_(None)) | (t.c.label != label)))
            .values(label=float(label), label_ts=datetime.now(UTC))
        ).rowcount
        return int(matched), bool(changed)

    def inherit_labels(self, conn: Any, request_ids: Sequence[str]) -> int:
        """Copy an existing label onto late rows of the same request ids (e.g. a shadow answer
        committed after the feedback arrived), so every row of a labelled request carries it."""
        if not request_ids:
            return 0
        t = predictions_table
        sibling = t.alias("sibling")
        labelled = (
            select(sibling.c.label, sibling.c.label_ts)
            .where(and_(sibling.c.request_id == t.c.request_id, sibling.c.label.is_not(None)))
            .limit(1)
        )
        result = conn.execute(
            update(t)
            .where(and_(t.c.request_id.in_(list(request_ids)), t.c.label.is_(None),
                        labelled.exists()))
            .values(label=labelled.with_only_columns(sibling.c.label).scalar_subquery(),
                    label_ts=labelled.with_only_columns(sibling.c.label_ts).scalar_subquery())
        )
        return int(result.rowcount or 0)

    # ---- reads -------------------------------------------------------------------------------
    def count(self, roles: Iterable[str] | None = None) -> int:
        t = predictions_table
        query = select(func.count()).select_from(t)
        if roles is not None:
            query = query.where(t.c.role.in_(list(roles)))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def read_window(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        roles: Iterable[str] | None = None,
        model_name: str | None = None,
        expand_features: bool = False,
    ) -> pd.DataFrame:
        """Rows with `start <= ts < end` (UTC), oldest first: what a daily partition reads.

        `expand_features=True` turns the JSON features into one column per feature, named as the
        features themselves, so the frame can be validated against the data contract and fed to a
        drift report as is. SQLite returns naive datetimes (UTC); Postgres returns aware ones.
        """
        t = predictions_table
        query = select(t)
        if start is not None:
            query = query.where(t.c.ts >= _utc(start))
        if end is not None:
            query = query.where(t.c.ts < _utc(end))
        if roles is not None:
            query = query.where(t.c.role.in_(list(roles)))
        if model_name is not None:
            query = query.where(t.c.model_name == model_name)
        query = query.order_by(t.c.ts, t.c.request_id, t.c.role)
        with self.engine.connect() as conn:
            df = pd.DataFrame(conn.execute(query).mappings().all(), columns=COLUMNS)
        if expand_features and len(df):
            feats = pd.DataFrame([json.loads(s) for s in df["features"]], index=df.index)
            df = pd.concat([df.drop(columns=["features"]), feats], axis=1)
        return df

    def get(self, request_id: str) -> pd.DataFrame:
        t = predictions_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.request_id == request_id)).mappings().all()
        return pd.DataFrame(rows, columns=COLUMNS)


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
