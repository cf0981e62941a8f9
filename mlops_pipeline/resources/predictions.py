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

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
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
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ---- writes ------------------------------------------------------------------------------
    def write(self, rows: Sequence[PredictionRow]) -> int:
        """Insert rows in one transaction: committed (durable) when this returns."""
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(predictions_table.insert(), [r.as_params() for r in rows])
        return len(rows)

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
