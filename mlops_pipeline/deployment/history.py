"""Alias history: every move of a registry alias, append-only, where the deployment's state lives.

MLflow keeps only where an alias points *now*. To answer "which model answered at 03:00 last
Tuesday, and who moved it there?", every alias move made through `mlops_pipeline.deployment.registry.Registry`
(the loop, `promote`, `rollback` from the CLI or the server, `--force`, the release guard) appends
one row to the table `alias_events`: model, alias, from-version, to-version (NULL when the alias
was removed), when (UTC, taken right after MLflow accepted the move), by what (`dagster:<run id>`,
`cli:<user>`, `server:<url>`, a sensor) and why (the gate verdict, an SLO breach, a typed reason).
Landed batches set aside and restored (`mlops_pipeline.data.quarantine`) are recorded here too, so
one history answers "who changed what the loop trains on or serves": alias `batch:<file name>` of
the dataset's model name, from/to `landed` / `quarantined`.

Rows are only ever inserted (autoincrement id; nothing here updates or deletes), in the database of
the prediction store (`MLOPS_PREDICTIONS_URL`; SQLite under the data dir by default, Postgres in the
production profile), so the history survives restarts and sits next to the captured requests whose
`model_version` it must agree with. The table has its own SQLAlchemy metadata; the engine is
opened the way the store opens its database (`monitoring.predictions.open_engine`: one home for the
default URL and the SQLite settings), and nothing here imports Dagster, so the CLI, the serving
process and the assets can all write it cheaply.
"""

from __future__ import annotations

import getpass
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)

from mlops_pipeline.monitoring.predictions import default_url, open_engine
from mlops_pipeline.monitoring.predictions.engine import create_tables

#: The prediction store's URL variable: the history lives in the same database.
URL_ENV = "MLOPS_PREDICTIONS_URL"

metadata = MetaData()

alias_events = Table(
    "alias_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False,
           comment="UTC time the registry accepted the move."),
    Column("model", String(200), nullable=False),
    Column("alias", String(200), nullable=False),
    Column("from_version", String(32), nullable=True, comment="NULL: the alias pointed nowhere."),
    Column("to_version", String(32), nullable=True, comment="NULL: the alias was removed."),
    Column("actor", String(500), nullable=False,
           comment="Who moved it: dagster:<run id>, cli:<user>, server:<url>, sensor:<name>."),
    Column("reason", Text, nullable=False, comment="Why: gate verdict, SLO breach, typed reason."),
    Index("ix_alias_events_model_alias_at", "model", "alias", "at"),
)


def history_url(url: str | None = None) -> str:
    """`url`, else `MLOPS_PREDICTIONS_URL`, else the embedded default: the prediction store's DB."""
    return url or os.environ.get(URL_ENV) or default_url()


def default_actor() -> str:
    """A move made without naming its actor is at least attributed to the OS user who made it."""
    try:
        return f"user:{getpass.getuser()}"
    except (OSError, KeyError):
        return "user:unknown"


def to_utc(ts: datetime) -> datetime:
    """Aware UTC; a naive time is taken as UTC (SQLite returns naive UTC)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (`2026-12-02T03:00`, `...Z`, `...+01:00`) or `now`; naive means UTC."""
    if text.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        return to_utc(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r} (e.g. 2026-12-02T03:00:00Z)") from None


@dataclass(frozen=True)
class AliasEvent:
    """One row of `alias_events`: an alias move, when, by whom and why (see the module docstring)."""

    id: int
    at: datetime
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    actor: str
    reason: str

    def __str__(self) -> str:
        src = f"v{self.from_version}" if self.from_version else "(none)"
        dst = f"v{self.to_version}" if self.to_version else "(removed)"
        return f"{self.at.isoformat()} {self.model}@{self.alias}: {src} -> {dst} by {self.actor}"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "model": self.model, "alias": self.alias,
                "from_version": self.from_version, "to_version": self.to_version,
                "actor": self.actor, "reason": self.reason}


def _event(row: Any) -> AliasEvent:
    return AliasEvent(int(row.id), to_utc(row.at), row.model, row.alias, row.from_version,
                      row.to_version, row.actor, row.reason)


class AliasHistory:
    """Append and read alias events through SQLAlchemy; thread-safe (one engine, a pool)."""

    def __init__(self, url: str | None = None, engine: Engine | None = None):
        self.url = history_url(url)
        # The store's settings on its database (WAL, FULL sync so an appended event survives a
        # power cut, a busy timeout so an append waits for the store's group commit); on a server
        # database the pool pings first: a long-lived process's pooled connection may have died.
        self.engine = engine if engine is not None else open_engine(self.url, pool_pre_ping=True)
        create_tables(self.engine, metadata)

    def close(self) -> None:
        self.engine.dispose()

    def append(self, model: str, alias: str, from_version: str | None, to_version: str | None,
               actor: str, reason: str = "", at: datetime | None = None) -> AliasEvent:
        """Record one move (committed before this returns); `at` defaults to now (UTC)."""
        when = to_utc(at) if at is not None else datetime.now(UTC)
        values = {"at": when, "model": model, "alias": alias,
                  "from_version": None if from_version is None else str(from_version),
                  "to_version": None if to_version is None else str(to_version),
                  "actor": actor[:500], "reason": reason}
        with self.engine.begin() as conn:
            new_id = conn.execute(insert(alias_events).values(**values)).inserted_primary_key[0]
        return AliasEvent(int(new_id), when, model, alias, values["from_version"],
                          values["to_version"], values["actor"], reason)

    def events(self, model: str | None = None, alias: str | None = None,
               until: datetime | None = None, limit: int | None = None) -> list[AliasEvent]:
        """Events oldest first (by time, then id), optionally of one model/alias, up to `until`;
        with `limit`, the newest `limit` of them."""
        t = alias_events
        where = []
        if model is not None:
            where.append(t.c.model == model)
        if alias is not None:
            where.append(t.c.alias == alias)
        if until is not None:
            where.append(t.c.at <= to_utc(until))
        query = select(t).where(*where)
        if limit is not None:
            query = query.order_by(t.c.at.desc(), t.c.id.desc()).limit(limit)
        else:
            query = query.order_by(t.c.at, t.c.id)
        with self.engine.connect() as conn:
            rows = [_event(r) for r in conn.execute(query)]
        return rows[::-1] if limit is not None else rows

    def event_at(self, model: str, alias: str, at: datetime) -> AliasEvent | None:
        """The move that put `alias` where it was at `at` (None: no move on record by then)."""
        t = alias_events
        query = (select(t).where(t.c.model == model, t.c.alias == alias, t.c.at <= to_utc(at))
                 .order_by(t.c.at.desc(), t.c.id.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _event(row)

    def version_at(self, model: str, alias: str, at: datetime) -> str | None:
        """Which version `alias` named at `at`: None before the first move on record, or while
        the alias was removed."""
        found = self.event_at(model, alias, at)
        return None if found is None else found.to_version


_open: dict[str, AliasHistory] = {}
_open_lock = threading.Lock()


def open_history(url: str | None = None) -> AliasHistory:
    """The process's one `AliasHistory` per database (engine and table check made once)."""
    resolved = history_url(url)
    with _open_lock:
        found = _open.get(resolved)
        if found is None:
            found = _open[resolved] = AliasHistory(resolved)
        return found
