"""The alias history agrees with the prediction store: `history --at <a request's time>` names the
version the store recorded as the champion that answered it, across promote -> rollback -> promote.

A real serving process, the session's MLflow server and the CLI in-process, all on one deployment
database (the embedded default under the data dir, as in a deployment where every process reads
the same `MLOPS_PREDICTIONS_URL`): the loop's registration of v1, the CLI's promotions and the
server's rollback all write their moves there, and the server captures its answers there. The
server follows the alias at its next poll (or at once on the CLI's authenticated reload), so a
request answered between a move and the server reporting the new version on /health may carry
either version; every other request must match the history exactly.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest

from mlops_pipeline.cli import main
from mlops_pipeline.deployment.history import AliasHistory, to_utc
from mlops_pipeline.deployment.tags import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.monitoring.predictions import PredictionStore
from mlops_pipeline_tests.serving.conftest import (
    BIN,
    MODEL,
    TOKEN,
    Stack,
    free_port,
    records,
    start,
    stop,
    wait_http,
)

pytestmark = pytest.mark.slow


class Traffic(threading.Thread):
    """One-record requests back to back; counts the answered ones."""

    def __init__(self, url: str, record: dict):
        super().__init__(daemon=True)
        self.url, self.record = url, record
        self.statuses: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.halt.is_set():
                try:
                    self.statuses.append(client.post("/predict", json={"records": [self.record]}).status_code)
                except httpx.HTTPError:
                    self.statuses.append(0)
                time.sleep(0.02)

    def wait_for(self, more: int, timeout: float = 60.0) -> None:
        target = len(self.statuses) + more
        deadline = time.monotonic() + timeout
        while len(self.statuses) < target:
            assert time.monotonic() < deadline, f"only {len(self.statuses)} of {target} requests answered"
            time.sleep(0.05)


def _restore(res: MLflow) -> None:
    res.set_alias(MODEL, CHAMPION, "1", actor="test:restore", reason="test teardown")
    res.set_alias(MODEL, CHALLENGER, "2", actor="test:restore", reason="test teardown")
    res.remove_alias(MODEL, PREVIOUS_CHAMPION, actor="test:restore", reason="test teardown")


def test_history_at_names_the_version_the_store_recorded_across_promote_rollback_promote(
        stack: Stack, capsys, monkeypatch):
    monkeypatch.delenv("MLOPS_PREDICTIONS_URL", raising=False)
    db = f"sqlite:///{stack.data_dir / 'predictions' / 'predictions.db'}"  # the deployment's default
    res = MLflow(tracking_uri=stack.tracking_uri)
    assert str(res.version_by_alias(MODEL, CHAMPION).version) == "1"
    assert str(res.version_by_alias(MODEL, CHALLENGER).version) == "2"
    port = free_port()
    (stack.root / "history").mkdir(exist_ok=True)
    log = stack.root / "history" / "serve.log"
    env = {k: v for k, v in stack.env.items() if k != "MLOPS_PREDICTIONS_URL"}
    env.update(MLOPS_SERVE_TOKEN=TOKEN, MLOPS_SERVE_STATE_FILE=str(stack.root / "history" / "server.json"))
    url = f"http://127.0.0.1:{port}"
    proc = start([str(BIN / "mlops-pipeline"), "serve", "--port", str(port), "--poll-seconds", "1"],
                 env, log)
    monkeypatch.setenv("MLOPS_SERVE_TOKEN", TOKEN)  # rollback goes through the server
    traffic = Traffic(url, records(stack, 1, offset=80)[0])
    moves: list[tuple[datetime, datetime, str, str]] = []  # (asked, server reported, from, to)
    try:
        wait_http(f"{url}/ready", proc, log)
        started = datetime.now(UTC)
        traffic.start()
        traffic.wait_for(15)
        steps = [(["promote", "2", "--reason", "e2e promote"], "1", "2"),
                 (["rollback", "--reason", "e2e rollback"], "2", "1"),
                 (["promote", "2", "--reason", "e2e promote again"], "1", "2")]
        for argv, old, new in steps:
            asked = datetime.now(UTC)
            assert main([*argv, "--server-url", url]) == 0
            reported = datetime.now(UTC)  # the command returns once /health says `new` everywhere
            out = capsys.readouterr().out
            assert f"moved {MODEL}@champion: v{old} -> v{new}" in out and f"answers with v{new}" in out
            assert "moving the aliases here" not in out  # the rollback was the server's
            moves.append((asked, reported, old, new))
            traffic.wait_for(15)
        finished = datetime.now(UTC)
    finally:
        traffic.halt.set()
        traffic.join(timeout=15)
        _restore(res)
        stop(proc)
    assert set(traffic.statuses) == {200}

    history = AliasHistory(db)
    try:
        events = [e for e in history.events(model=MODEL, alias=CHAMPION) if started <= e.at <= finished]
        assert [(e.from_version, e.to_version) for e in events] == [("1", "2"), ("2", "1"), ("1", "2")]
        assert events[0].actor.startswith("cli:") and events[0].reason.startswith("gate passed")
        assert events[0].reason.endswith("e2e promote")
        assert events[1].actor.startswith(f"server:{url} for cli:")
        assert events[1].reason == "rollback: e2e rollback"
        for (asked, reported, _, _), event in zip(moves, events, strict=True):
            assert asked <= event.at <= reported
        first = history.events(model=MODEL, alias=CHAMPION)[0]  # the loop made v1 champion
        assert (first.to_version, first.actor[:8]) == ("1", "dagster:")

        rows = PredictionStore(db).read_window(start=started, end=finished)
        assert set(rows["role"]) == {"champion"} and len(rows) >= 60  # 15 per stretch at least
        stable: dict[int, list[tuple[datetime, str]]] = {}
        for ts, version in zip(rows["ts"], rows["model_version"], strict=True):
            at = to_utc(ts.to_pydatetime())
            window = next((i for i, (a, r, _, _) in enumerate(moves) if a <= at < r), None)
            if window is not None:  # between a move and the server reporting it: either version
                assert version in moves[window][2:], (at, version)
                continue
            assert history.version_at(MODEL, CHAMPION, at) == version, (at, version)
            stable.setdefault(sum(r <= at for _, r, _, _ in moves), []).append((at, version))
        assert sorted(stable) == [0, 1, 2, 3]  # requests answered before, and after each move
        assert [stable[i][0][1] for i in range(4)] == ["1", "2", "1", "2"]
    finally:
        history.close()

    # The command answers the same for the first and last request of every stable stretch.
    for stretch in stable.values():
        for at, version in (stretch[0], stretch[-1]):
            assert main(["history", "--at", at.isoformat(), "--json"]) == 0
            assert json.loads(capsys.readouterr().out)["version"] == version
