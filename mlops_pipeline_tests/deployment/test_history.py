"""The alias history: append-only events, "which version at time T", and every registry move on it.

The history is tested on SQLite here (and on Postgres in `test_history_postgres.py`); the registry
moves run against MLflow's embedded SQLite registry, as the CLI's `rollback` does.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from mlops_pipeline.deployment.history import AliasHistory, open_history, parse_time
from mlops_pipeline.deployment.registry import Registry, client_for
from mlops_pipeline.deployment.tags import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION

T0 = datetime(2026, 11, 3, 3, 0, tzinfo=UTC)


@pytest.fixture
def history(tmp_path) -> AliasHistory:
    h = AliasHistory(f"sqlite:///{tmp_path / 'store' / 'predictions.db'}")
    yield h
    h.close()


def test_version_at_answers_from_the_moves_before_that_time(history):
    history.append("m", CHAMPION, None, "1", "dagster:run-a", "gate passed", at=T0)
    history.append("m", CHAMPION, "1", "2", "cli:alice", "gate passed", at=T0 + timedelta(hours=1))
    history.append("m", CHAMPION, "2", "1", "cli:bob", "rollback: p99", at=T0 + timedelta(hours=2))
    history.append("m", CHALLENGER, None, "3", "dagster:run-b", "", at=T0 + timedelta(hours=1, minutes=30))

    assert history.version_at("m", CHAMPION, T0 - timedelta(seconds=1)) is None  # before any move
    assert history.version_at("m", CHAMPION, T0) == "1"  # a move counts from its own instant
    assert history.version_at("m", CHAMPION, T0 + timedelta(minutes=59)) == "1"
    assert history.version_at("m", CHAMPION, T0 + timedelta(hours=1, minutes=59)) == "2"
    assert history.version_at("m", CHAMPION, T0 + timedelta(days=1)) == "1"
    assert history.version_at("m", CHALLENGER, T0 + timedelta(hours=3)) == "3"
    assert history.version_at("other", CHAMPION, T0 + timedelta(days=1)) is None
    # A naive time is UTC; an aware one in another zone is converted.
    assert history.version_at("m", CHAMPION, datetime(2026, 11, 3, 4, 30)) == "2"
    assert history.version_at("m", CHAMPION, parse_time("2026-11-03T05:30:00+01:00")) == "2"
    who = history.event_at("m", CHAMPION, T0 + timedelta(hours=2, minutes=5))
    assert (who.actor, who.reason, who.from_version) == ("cli:bob", "rollback: p99", "2")


def test_removed_alias_names_no_version_and_same_instant_moves_keep_their_order(history):
    history.append("m", CHALLENGER, None, "2", "dagster:r", "", at=T0)
    history.append("m", CHALLENGER, "2", None, "sensor:release_guard", "p99 4x champion's", at=T0)
    assert history.version_at("m", CHALLENGER, T0) is None  # the later append wins at equal times
    assert [e.to_version for e in history.events(alias=CHALLENGER)] == ["2", None]


def test_events_are_kept_in_order_with_ids_and_filters(history):
    for i in range(5):
        history.append("m", CHAMPION, str(i) if i else None, str(i + 1), "cli:u", f"#{i}",
                       at=T0 + timedelta(minutes=i))
    history.append("n", CHAMPION, None, "9", "cli:u", "", at=T0)
    events = history.events(model="m")
    assert [e.to_version for e in events] == ["1", "2", "3", "4", "5"]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert [e.to_version for e in history.events(model="m", limit=2)] == ["4", "5"]
    assert [e.to_version for e in history.events(until=T0)] == ["1", "9"]
    assert events[0].as_dict()["at"] == T0.isoformat()


def test_events_survive_the_process_and_another_process_sees_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    code = ("import sys; from mlops_pipeline.deployment.history import AliasHistory; "
            "AliasHistory(sys.argv[1]).append('m', 'champion', None, '7', 'cli:other', 'from afar'); "
            "assert 'dagster' not in sys.modules and 'mlflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, url], check=True)
    h = AliasHistory(url)
    try:
        assert h.version_at("m", CHAMPION, datetime.now(UTC)) == "7"
    finally:
        h.close()


def test_parse_time_takes_iso_and_rejects_the_rest():
    assert parse_time("2026-11-03T03:00:00Z") == T0
    assert parse_time("2026-11-03 03:00") == T0
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time("last tuesday")


# ---- every registry move goes through the history ----------------------------------------------
@pytest.fixture
def registry(data_dir, monkeypatch) -> Registry:
    monkeypatch.delenv("MLOPS_PREDICTIONS_URL", raising=False)  # the store's default, under data_dir
    client = client_for()
    client.create_registered_model("toy")
    for _ in range(3):
        client.create_model_version("toy", source=str(data_dir))
    return Registry(client)


def _champion_events(model: str = "toy"):
    return [(e.from_version, e.to_version, e.actor, e.reason)
            for e in open_history().events(model=model, alias=CHAMPION)]


def test_promote_and_rollback_record_each_alias_move_with_who_and_why(registry):
    registry.set_alias("toy", CHALLENGER, "2", actor="dagster:r1", reason="registered")
    registry.promote("toy", "1", actor="dagster:r0", reason="gate passed: roc_auc=0.7")
    registry.promote("toy", "2", actor="cli:alice", reason="gate passed: roc_auc=0.71")
    registry.rollback("toy", actor="cli:bob", reason="p99 doubled")
    assert _champion_events() == [
        (None, "1", "dagster:r0", "gate passed: roc_auc=0.7"),
        ("1", "2", "cli:alice", "gate passed: roc_auc=0.71"),
        ("2", "1", "cli:bob", "rollback: p99 doubled"),
    ]
    every = [(e.alias, e.from_version, e.to_version) for e in open_history().events(model="toy")]
    assert every == [
        (CHALLENGER, None, "2"), (CHAMPION, None, "1"),
        (PREVIOUS_CHAMPION, None, "1"), (CHAMPION, "1", "2"), (CHALLENGER, "2", None),
        (CHAMPION, "2", "1"), (PREVIOUS_CHAMPION, "1", "2"),
    ]
    # The history agrees with the registry at every point; now, with where the aliases are.
    now = datetime.now(UTC)
    for alias in (CHAMPION, PREVIOUS_CHAMPION, CHALLENGER):
        mv = registry.version_by_alias("toy", alias)
        assert open_history().version_at("toy", alias, now) == (None if mv is None else str(mv.version))


def test_a_move_without_an_actor_is_attributed_to_the_os_user(registry):
    import getpass

    registry.promote("toy", "3")
    assert _champion_events()[-1][2] == f"user:{getpass.getuser()}"


def test_a_history_that_cannot_be_written_is_loud_but_the_move_stands(data_dir, registry, caplog):
    blocker = data_dir / "not-a-dir"
    blocker.write_text("a file where the history's directory should be")
    broken = Registry(registry.client, history_url=f"sqlite:///{blocker / 'predictions.db'}")
    with caplog.at_level(logging.ERROR, logger="mlops_pipeline.deployment.registry"):
        moves = broken.promote("toy", "1", actor="cli:alice", reason="gate passed")
    assert [str(m) for m in moves] == ["toy@champion: (none) -> v1"]
    assert moves[0].history_error and "not-a-dir" in moves[0].history_error
    assert "ALIAS HISTORY NOT RECORDED for toy@champion: (none) -> v1" in caplog.text
    assert str(registry.version_by_alias("toy", CHAMPION).version) == "1"
