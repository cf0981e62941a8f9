"""The prediction store's database connection, set up once for everything stored in it.

`open_engine` is the one place the store's SQLite settings live (WAL, `synchronous=FULL`, a busy
timeout, 16 KiB pages, writing transactions that begin IMMEDIATE); the alias history, which lives
in the same database, opens it here too, so whichever opens the file first creates it the same
way. Imports only SQLAlchemy and the spec (no pandas), so opening the history stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

from mlops_pipeline.spec import data_dir


def default_url() -> str:
    """The embedded store: SQLite under the data dir (the alias history shares this database)."""
    path = data_dir() / "predictions" / "predictions.db"
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers (monitoring assets, tests) do not block the writer. synchronous=FULL: a committed
    # transaction survives power loss, which is what "an acknowledged prediction is never lost"
    # needs; group commit makes the extra fsync cheap per prediction. busy_timeout: serving
    # workers (one writer each) take turns instead of failing. 16 KiB pages (only a new, empty
    # database takes it; before WAL mode, which fixes it): a large capture is written as fewer
    # WAL frames and system calls.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA page_size=16384")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


#: Execution option of a connection that will write: its SQLite transaction starts IMMEDIATE.
WRITES = "mlops_writes"


def _sqlite_begin(conn: Any) -> None:
    # SQLAlchemy's recipe for pysqlite (driver autocommit off, BEGIN emitted here), so a writing
    # transaction takes SQLite's write lock when it starts: a writer then waits (busy_timeout) for
    # another process's writer, instead of failing with SQLITE_BUSY when a transaction that began
    # by reading (feedback: look up, then upsert) tries to write after another process committed.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITES) else "BEGIN")


def open_engine(url: str, pool_pre_ping: bool = False) -> Engine:
    """An engine on the store's database, set up as the store needs it: on SQLite the parent
    directory exists, connections are shared across threads, WAL + FULL sync + busy timeout, and
    writing transactions begin IMMEDIATE. Anything stored in this database (the alias history
    too) opens it here, so whichever opens the file first creates it the same way."""
    kwargs: dict[str, Any] = {}
    sqlite = url.startswith("sqlite")
    if sqlite:
        db = url.split("///", 1)[-1]
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "isolation_level": None}
    elif pool_pre_ping:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def create_tables(engine: Engine, metadata: Any) -> None:
    """Create `metadata`'s missing tables, safe while other processes use the database. On SQLite
    the check and the CREATE run in one writing (IMMEDIATE) transaction, so the CREATE waits for
    the write lock (busy_timeout) instead of failing "database is locked" when a serving process
    committed captures after the check began; elsewhere a race with another process creating them
    is retried once."""
    from sqlalchemy.exc import DBAPIError

    if engine.dialect.name == "sqlite":
        with engine.connect().execution_options(**{WRITES: True}) as conn, conn.begin():
            metadata.create_all(conn)
        return
    try:
        metadata.create_all(engine)
    except DBAPIError:  # another process created them between the check and the CREATE
        metadata.create_all(engine)
