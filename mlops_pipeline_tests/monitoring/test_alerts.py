"""Alerts page the owner: every alert names the model, its owner and the runbook; the verdict goes
out in the board's own words."""

from __future__ import annotations

from mlops_pipeline.monitoring.alerts import Alerts
from mlops_pipeline.monitoring.verdict import Signals, decide
from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG, load_spec
from mlops_pipeline_tests.webhook import Webhook


def test_the_verdict_is_sent_in_the_boards_words_to_the_owner() -> None:
    spec = load_spec(DEFAULT_DATASET_CONFIG)
    assert spec.owner and spec.runbook_url  # the shipped config names who is paged
    with Webhook() as hook:
        alerts = Alerts.for_spec(spec, webhook_url=hook.url)
        rows = [{"version": "v4", "role": "canary", "predictions": 100, "p99_ms": 155.0}]
        verdict = decide(Signals(model=spec.name, versions=rows))
        assert alerts.send_verdict(verdict) is True
        assert alerts.send("something else", kind="test") is True
    first, second = hook.received
    assert first["text"].startswith("ACT — roll back v4: canary p99 155 ms is 3.1x the 50 ms target → "
                                    "mlops-pipeline rollback")
    assert (first["level"], first["rule"], first["kind"]) == ("ACT", "latency", "verdict")
    assert first["command"] == verdict.command
    for alert in (first, second):
        assert (alert["owner"], alert["runbook_url"], alert["model"]) == (
            spec.owner, spec.runbook_url, spec.name)
        assert f"[owner: {spec.owner}, runbook: {spec.runbook_url}]" in alert["text"]


def test_without_an_owner_alerts_are_as_before() -> None:
    with Webhook() as hook:
        assert Alerts(webhook_url=hook.url).send("drift!", kind="test") is True
    assert hook.received == [{"text": "drift!", "kind": "test"}]
