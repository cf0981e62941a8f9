"""The prediction store: every prediction the serving process answers (or shadows), with its label.

It is the loop's record of what production saw and said, so monitoring, label-join and retraining
read it instead of scraping logs. What it promises:

- one row per scored request and role (the champion's or canary's answer, the challenger's shadow
  answer), its records column-wise (`codec`): a row per record would cost the writer a B-tree
  insert per record, and every reader wants windows of records anyway; `read_window` gives one
  row per record;
- captured rows are written once; labels live beside them, keyed by (batch, record), so a label
  never rewrites a captured row and a shadow answer committed after its label is labelled too;
- a request id names its record (`ids`), so feedback finds its row by primary key;
- durability is the writer's: `write` returns once committed (`synchronous=FULL` on SQLite, a
  committed transaction on Postgres); the serving process amortises it with group commits.

Embedded default: SQLite in WAL mode at `<data_dir>/predictions/predictions.db` (readers never
block the writer, so a Dagster asset can read while the server writes). Production: any SQLAlchemy
URL, e.g. `postgresql+psycopg2://...`. Imports only SQLAlchemy, pandas, numpy and msgspec.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import pandas as pd
from sqlalchemy import Engine, Table, and_, func, insert, select, update
from sqlalchemy.exc import DBAPIError

from mlops_pipeline.deployment.tags import SERVED_ROLES
from mlops_pipeline.monitoring.predictions import schema
from mlops_pipeline.monitoring.predictions.codec import (
    PredictionBatch,
    batch_values,
    explode,
    label_json,
    label_value,
)
from mlops_pipeline.monitoring.predictions.engine import WRITES, default_url, open_engine
from mlops_pipeline.monitoring.predictions.ids import parse_request_id
from mlops_pipeline.monitoring.predictions.schema import BATCH_INSERT, batches_table, labels_table


def served_rows(log: pd.DataFrame) -> pd.DataFrame:
    """The rows of a captured log whose answer reached a client (`SERVED_ROLES`: champion or
    canary, never shadow): what traffic, quality and labeling count as production's answers.
    An empty log is returned as is (it may lack the `role` column)."""
    return log[log["role"].isin(SERVED_ROLES)] if len(log) else log


@dataclass(frozen=True)
class _InsertPlan:
    sql: str
    mode: str  # "multirow" (SQLite), "execute_values" (psycopg2), "sqlalchemy"
    processors: list[Callable[[Any], Any] | None]
    row_sql: str = ""  # "(?, ?, ...)": one row of a multi-row VALUES


class PredictionStore:
    """Write and read captured predictions through SQLAlchemy; thread-safe (one engine, a pool).

    `url` defaults to the embedded SQLite store; the tables are created (and migrated) on open."""

    def __init__(self, url: str | None = None, engine: Engine | None = None):
        self.url = url or default_url()
        self.engine = engine if engine is not None else open_engine(self.url)
        self._insert_plan: _InsertPlan | None = None
        self._chunk_rows: int | None = None
        schema.create(self.engine)

    def close(self) -> None:
        """Dispose of the engine's connections."""
        self.engine.dispose()

    # ---- writes ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A writing transaction (committed on exit, rolled back on error)."""
        with self.engine.connect() as conn:
            conn.execution_options(**{WRITES: True})
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
            cols = ", ".join(prep.quote(c) for c in BATCH_INSERT)
            table = prep.format_table(batches_table)
            processors = [batches_table.c[c].type.dialect_impl(dialect).bind_processor(dialect)
                          for c in BATCH_INSERT]
            if dialect.name == "postgresql" and dialect.driver == "psycopg2":
                plan = _InsertPlan(f"INSERT INTO {table} ({cols}) VALUES %s", "execute_values", processors)
            elif dialect.name == "sqlite" and dialect.paramstyle == "qmark":
                plan = _InsertPlan(f"INSERT INTO {table} ({cols}) VALUES ", "multirow", processors,
                                   "(" + ", ".join("?" * len(BATCH_INSERT)) + ")")
            else:
                plan = _InsertPlan("", "sqlalchemy", processors)
            self._insert_plan = plan
        return plan

    def params(self, batches: Sequence[PredictionBatch]) -> list[tuple[Any, ...]]:
        """Positional parameters in column order, bind-processed for this dialect."""
        procs = self._plan().processors
        out = []
        for b in batches:
            values = batch_values(b)
            out.append(tuple(v if f is None or v is None else f(v)
                             for v, f in zip((values[c] for c in BATCH_INSERT), procs, strict=True)))
        return out

    def _multirow_chunk(self, conn: Any) -> int:
        """Rows per statement within SQLite's bound-variable limit (999 before 3.32)."""
        if self._chunk_rows is None:
            import sqlite3

            limit = 999
            with contextlib.suppress(Exception):
                limit = conn.connection.dbapi_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self._chunk_rows = max(1, min(500, limit // len(BATCH_INSERT)))
        return self._chunk_rows

    def insert(self, conn: Any, batches: Sequence[PredictionBatch]) -> int:
        """Insert within the caller's transaction (the group-commit writer commits many at once);
        returns the number of records."""
        if not batches:
            return 0
        plan = self._plan()
        records = sum(len(b) for b in batches)
        if plan.mode == "sqlalchemy":
            conn.execute(insert(batches_table), [batch_values(b) for b in batches])
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
        label = label_json(label)
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
        if label_json(label_value(current.label)) == label:
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
        out_of_domain: bool = False,
    ) -> pd.DataFrame:
        """One row per captured record and role with `start <= ts < end` (UTC), oldest first (then
        by request id and role): what a daily partition reads.

        `expand_features=True` turns the features into one column per feature, named as the
        features themselves, so the frame can be validated against the data contract and fed to a
        drift report as is; otherwise `features` holds each record's JSON object. SQLite returns
        naive datetimes (UTC); Postgres returns aware ones.

        `prediction` is the class label in the dataset's own type (float64 when every class is a
        number, as for a 0/1 target) or the value; `label` likewise. `probabilities=True` adds a
        column of each record's {class: probability} (classification; None for regression);
        `out_of_domain=True` a column of each record's columns answered outside the contract's
        domain (policy flag), None when none.
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
        return explode(rows, label_rows, expand_features, probabilities, out_of_domain)

    def get(self, request_id: str, probabilities: bool = False, out_of_domain: bool = False) -> pd.DataFrame:
        """Every captured row (served and shadow) of one record, in `read_window`'s columns."""
        parsed = parse_request_id(request_id)
        if parsed is None:
            return explode([], [], False, probabilities, out_of_domain)
        batch_id, record = parsed
        b, lab = batches_table, labels_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(b).where(and_(b.c.batch_id == batch_id, b.c.records > record))
                                .order_by(b.c.role)).all()
            label_rows = conn.execute(select(lab).where(and_(lab.c.batch_id == batch_id,
                                                             lab.c.record == record))).all()
        frame = explode(rows, label_rows, False, probabilities, out_of_domain)
        return frame[frame["request_id"] == request_id].reset_index(drop=True)


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
