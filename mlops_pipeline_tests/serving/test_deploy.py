"""Deploy and rollback against a running server: `mlops-pipeline promote` / `rollback` move the
alias, the server swaps without failing a request, and a registry outage degrades but never stops
serving.

The server here reaches MLflow through a loopback TCP forwarder, so the outage test can cut the
registry off for this server alone. Every test puts the aliases back (v1 champion, v2 challenger).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from mlops_pipeline.cli import main
from mlops_pipeline.deployment.tags import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.monitoring.predictions import PredictionStore
from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline_tests.serving.conftest import (
    MODEL,
    TOKEN,
    Forwarder,
    ServeProc,
    Stack,
    records,
    start_server,
    stop,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry_proxy(stack: Stack) -> Iterator[Forwarder]:
    fwd = Forwarder(int(stack.tracking_uri.rsplit(":", 1)[1]))
    fwd.start()
    yield fwd
    fwd.stop()


@pytest.fixture(scope="module")
def plain_server(stack: Stack, registry_proxy: Forwarder) -> Iterator[ServeProc]:
    """Champion only (no shadow, no canary), default policies, polling every second."""
    srv = start_server(stack, "plain", "--poll-seconds", "1",
                       tracking_uri=f"http://127.0.0.1:{registry_proxy.port}")
    yield srv
    stop(srv.proc)


def registry() -> MLflow:
    return MLflow(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def restore_aliases() -> None:
    res = registry()
    client = res.client()
    res.set_alias(MODEL, CHAMPION, "1")
    res.set_alias(MODEL, CHALLENGER, "2")
    if res.version_by_alias(MODEL, PREVIOUS_CHAMPION) is not None:
        client.delete_registered_model_alias(MODEL, PREVIOUS_CHAMPION)


class Traffic(threading.Thread):
    """A client sending one-record requests back to back, recording status and version."""

    def __init__(self, url: str, record: dict):
        super().__init__(daemon=True)
        self.url, self.record = url, record
        self.log: list[tuple[float, int, str | None]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.halt.is_set():
                try:
                    r = client.post("/predict", json={"records": [self.record]})
                    version = r.json().get("model_version") if r.status_code == 200 else None
                    self.log.append((time.time(), r.status_code, version))
                except httpx.HTTPError as exc:
                    self.log.append((time.time(), 0, repr(exc)))
                time.sleep(0.005)

    def versions(self) -> list[str | None]:
        out: list[str | None] = []
        for _, _, v in self.log:
            if not out or out[-1] != v:
                out.append(v)
        return out


def _seconds(out: str, version: str) -> float:
    m = re.search(rf"answers with v{version} after ([0-9.]+)s", out)
    assert m, out
    return float(m.group(1))


def test_promote_then_rollback_while_a_client_is_sending(stack, plain_server, capsys, monkeypatch):
    traffic = Traffic(plain_server.url, records(stack, 1, offset=50)[0])
    traffic.start()
    try:
        time.sleep(0.5)
        assert main(["promote", "2", "--server-url", plain_server.url]) == 0
        out = capsys.readouterr().out
        assert "gate: passed" in out
        assert f"moved {MODEL}@champion: v1 -> v2" in out
        assert f"moved {MODEL}@previous-champion: (none) -> v1" in out
        assert _seconds(out, "2") < 10
        time.sleep(0.5)
        # No --server-url this time: the command finds the server through the state file it wrote.
        monkeypatch.setenv("MLOPS_SERVE_STATE_FILE", str(stack.root / "plain" / "server.json"))
        assert main(["rollback"]) == 0
        out = capsys.readouterr().out
        assert f"moved {MODEL}@champion: v2 -> v1" in out
        assert _seconds(out, "1") < 10
        time.sleep(0.5)
    finally:
        traffic.halt.set()
        traffic.join(timeout=15)
        restore_aliases()
    statuses = {status for _, status, _ in traffic.log}
    assert statuses == {200}, [entry for entry in traffic.log if entry[1] != 200][:5]
    assert traffic.versions() == ["1", "2", "1"]
    assert len(traffic.log) > 50
    logged = PredictionStore(plain_server.predictions_url).read_window()
    assert set(logged["model_version"]) == {"1", "2"}
    assert set(logged["role"]) == {"champion"}
    assert len(logged) == len(traffic.log)
    tags = registry().client().get_model_version(MODEL, "2").tags
    assert tags["promoted_by"].startswith("cli:")
    assert "promotion.forced" not in tags


def test_rollback_moves_the_aliases_itself_when_the_server_follows_another_registry(
        stack, plain_server, capsys, monkeypatch):
    """plain_server reaches MLflow through a forwarder: to it the registry has another address, so
    it refuses to move aliases for this CLI (409), which then moves them itself."""
    res = registry()
    res.promote(MODEL, "2")
    monkeypatch.setenv("MLOPS_SERVE_TOKEN", TOKEN)
    try:
        assert main(["rollback", "--server-url", plain_server.url]) == 0
        out = capsys.readouterr().out
        assert "did not roll back (409: this server follows another registry)" in out
        assert f"moved {MODEL}@champion: v2 -> v1" in out and "answers with v1" in out
        assert res.version_by_alias(MODEL, CHAMPION).version == "1"
        assert res.version_by_alias(MODEL, PREVIOUS_CHAMPION).version == "2"
    finally:
        restore_aliases()


def test_promote_refuses_a_failing_gate_unless_forced(stack, tmp_path, capsys, monkeypatch):
    doc = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    doc["gate"]["roc_auc"]["floor"] = 0.99  # no model here reaches it
    doc["contract"] = str(PROJECT_ROOT / doc["contract"])
    strict = Path(tmp_path / "strict.yaml")
    strict.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(strict))
    res = registry()
    try:
        assert main(["promote", "2", "--config", str(strict)]) == 1
        captured = capsys.readouterr()
        assert "refused" in captured.err and "roc_auc" in captured.err
        assert "FAILED" in captured.out
        assert res.version_by_alias(MODEL, CHAMPION).version == "1"

        assert main(["promote", "2", "--config", str(strict), "--force"]) == 0
        out = capsys.readouterr().out
        assert "forced" in out and f"moved {MODEL}@champion: v1 -> v2" in out
        tags = res.client().get_model_version(MODEL, "2").tags
        assert tags["promotion.forced"] == "true"
        assert "roc_auc" in tags["promotion.forced_reasons"]
        assert res.version_by_alias(MODEL, CHAMPION).version == "2"
    finally:
        restore_aliases()
        res.client().delete_model_version_tag(MODEL, "2", "promotion.forced")


def _health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=5).json()


def test_registry_outage_degrades_health_but_keeps_serving(stack, plain_server, registry_proxy):
    # The previous tests leave v1 champion; a forced poll (one that starts after this ask) makes
    # sure the server has seen their last move, not only an earlier one.
    r = httpx.post(f"{plain_server.url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"},
                   timeout=90)
    assert r.status_code == 200 and r.json()["polled"], r.text
    assert r.json()["model_version"] == "1" and r.json()["status"] == "ok"
    rec = records(stack, 1, offset=60)
    registry_proxy.stop()
    try:
        deadline = time.time() + 30
        while (health := _health(plain_server.url))["status"] != "degraded":
            assert time.time() < deadline, health
            time.sleep(0.2)
        assert health["registry"]["reachable"] is False and health["registry"]["last_error"]
        r = httpx.post(f"{plain_server.url}/predict", json={"records": rec}, timeout=10)
        assert r.status_code == 200 and r.json()["model_version"] == "1"
        assert httpx.get(f"{plain_server.url}/ready").status_code == 200
        assert "mlops_registry_reachable 0.0" in httpx.get(f"{plain_server.url}/metrics").text
    finally:
        registry_proxy.start()
    deadline = time.time() + 30
    while _health(plain_server.url)["status"] != "ok":
        assert time.time() < deadline
        time.sleep(0.2)


def test_sigterm_stops_the_server_cleanly(stack, plain_server):
    """Runs last in this module: on SIGTERM the lifespan shutdown drains the capture queue and
    removes the state file (its last step). uvicorn re-raises the signal after a graceful shutdown,
    so the exit status is -SIGTERM, not a crash code."""
    state = stack.root / "plain" / "server.json"
    assert state.exists()
    store = PredictionStore(plain_server.predictions_url)
    r = httpx.post(f"{plain_server.url}/predict", json={"records": records(stack, 1, offset=70)})
    assert r.status_code == 200
    before = store.count()
    stop(plain_server.proc)
    assert plain_server.proc.returncode in (0, -15), plain_server.log.read_text()[-2000:]
    assert "Traceback" not in plain_server.log.read_text()
    assert not state.exists()
    assert store.count() == before
    assert r.json()["predictions"][0]["request_id"] in set(store.read_window()["request_id"])
