"""Alerts page the owner: every alert names the model, its owner and the runbook; the verdict goes
out in the board's own words."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from mlops_pipeline.monitoring.alerts import Alerts
from mlops_pipeline.monitoring.verdict import Signals, decide
from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG, load_spec


def _hook() -> tuple[str, list[dict], HTTPServer]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/hook", received, server


def test_the_verdict_is_sent_in_the_boards_words_to_the_owner() -> None:
    spec = load_spec(DEFAULT_DATASET_CONFIG)
    assert spec.owner and spec.runbook_url  # the shipped config names who is paged
    url, received, server = _hook()
    try:
        alerts = Alerts.for_spec(spec, webhook_url=url)
        rows = [{"version": "v4", "role": "canary", "predictions": 100, "p99_ms": 155.0}]
        verdict = decide(Signals(model=spec.name, versions=rows))
        assert alerts.send_verdict(verdict) is True
        assert alerts.send("something else", kind="test") is True
    finally:
        server.shutdown()
        server.server_close()
    first, second = received
    assert first["text"].startswith("ACT — roll back v4: canary p99 155 ms is 3.1x the 50 ms target → "
                                    "mlops-pipeline rollback")
    assert (first["level"], first["rule"], first["kind"]) == ("ACT", "latency", "verdict")
    assert first["command"] == verdict.command
    for alert in (first, second):
        assert (alert["owner"], alert["runbook_url"], alert["model"]) == (
            spec.owner, spec.runbook_url, spec.name)
        assert f"[owner: {spec.owner}, runbook: {spec.runbook_url}]" in alert["text"]


def test_without_an_owner_alerts_are_as_before() -> None:
    url, received, server = _hook()
    try:
        assert Alerts(webhook_url=url).send("drift!", kind="test") is True
    finally:
        server.shutdown()
        server.server_close()
    assert received == [{"text": "drift!", "kind": "test"}]
