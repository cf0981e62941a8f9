"""`mlops-pipeline history`: the alias moves on record, and `--at` naming the version at a time."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from mlops_pipeline.cli import main
from mlops_pipeline.deployment.history import AliasHistory

T0 = datetime(2026, 11, 3, 3, 0, tzinfo=UTC)


@pytest.fixture
def url(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    monkeypatch.setenv("MLOPS_PREDICTIONS_URL", url)
    monkeypatch.delenv("MLOPS_DATASET_CONFIG", raising=False)
    h = AliasHistory(url)
    h.append("flights_delay", "champion", None, "1", "dagster:run-1", "gate passed: roc_auc=0.70", at=T0)
    h.append("flights_delay", "challenger", None, "2", "dagster:run-2", "", at=T0 + timedelta(minutes=5))
    h.append("flights_delay", "champion", "1", "2", "cli:alice", "gate passed: roc_auc=0.71",
             at=T0 + timedelta(hours=1))
    h.append("flights_delay", "champion", "2", "1", "server:http://127.0.0.1:8080 for cli:bob",
             "rollback: p99 doubled", at=T0 + timedelta(hours=2))
    h.append("other", "champion", None, "4", "cli:carol", "", at=T0)
    h.close()
    return url


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_json_lists_every_event_oldest_first(url, capsys):
    assert main(["history", "--json"]) == 0
    events = _json(capsys)["events"]
    assert [(e["model"], e["alias"], e["to_version"]) for e in events] == [
        ("flights_delay", "champion", "1"), ("other", "champion", "4"),
        ("flights_delay", "challenger", "2"), ("flights_delay", "champion", "2"),
        ("flights_delay", "champion", "1"),
    ]
    assert events[-1]["actor"] == "server:http://127.0.0.1:8080 for cli:bob"
    assert events[-1]["reason"] == "rollback: p99 doubled"
    assert datetime.fromisoformat(events[0]["at"]) == T0

    assert main(["history", "--model", "flights_delay", "--alias", "champion", "--json",
                 "--limit", "2"]) == 0
    assert [e["to_version"] for e in _json(capsys)["events"]] == ["2", "1"]


@pytest.mark.parametrize(("at", "version"), [
    ("2026-11-03T02:59:59Z", None),  # before the first move on record
    ("2026-11-03T03:00:00", "1"),  # naive = UTC; a move counts from its own instant
    ("2026-11-03T04:30:00Z", "2"),
    ("2026-11-03T05:59:59+01:00", "2"),  # 04:59:59 UTC, a second before the rollback
    ("2026-11-03T05:00:01Z", "1"),  # after the rollback
])
def test_at_names_the_champion_of_that_time(url, capsys, at, version):
    # No --model: the dataset's model (flights_delay in the default spec).
    assert main(["history", "--at", at, "--json"]) == 0
    answer = _json(capsys)
    assert (answer["model"], answer["alias"], answer["version"]) == ("flights_delay", "champion", version)
    if version is not None:
        assert answer["event"]["to_version"] == version


def test_at_another_alias_and_a_readable_answer(url, capsys):
    assert main(["history", "--at", "2026-11-03T03:10:00Z", "--alias", "challenger",
                 "--model", "flights_delay"]) == 0
    out = capsys.readouterr().out
    assert "flights_delay@challenger at 2026-11-03T03:10:00+00:00: v2" in out and "dagster:run-2" in out


def test_table_shows_who_and_why(url, capsys):
    assert main(["history", "--model", "flights_delay"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["id", "at", "(UTC)"]
    assert len(lines) == 5
    assert "flights_delay@champion" in lines[-1] and "v2" in lines[-1] and "v1" in lines[-1]
    assert lines[-1].endswith("rollback: p99 doubled")


def test_a_time_that_is_not_iso_is_refused(url, capsys):
    assert main(["history", "--at", "last tuesday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err


def test_the_command_starts_without_mlflow_or_dagster(url):
    code = ("import sys; from mlops_pipeline.cli import build_parser; "
            "from mlops_pipeline.settings import Settings; "
            "a = build_parser().parse_args(['history', '--model', 'other', '--json']); "
            "assert a.func(a, Settings.from_env()) == 0; "
            "heavy = [m for m in ('mlflow', 'dagster', 'sklearn') if m in sys.modules]; "
            "assert not heavy, heavy")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(out)["events"][0]["to_version"] == "4"
