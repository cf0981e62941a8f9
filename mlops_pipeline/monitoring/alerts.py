"""Where alerts go: always the log, and a webhook (Slack-compatible JSON) when one is configured.

Every alert names who is paged: the dataset config's `owner` and `runbook_url` (and the model)
ride along on each one, in the text and as fields, so a page always says whose model regressed
and where to read what to do. `send_verdict` sends THE verdict (`monitoring.verdict`) in the
same words the board opens with.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any


class Alerts:
    """Logs every alert; with `webhook_url` (`MLOPS_ALERT_WEBHOOK_URL`) also POSTs it as
    `{"text": ..., "owner": ..., "runbook_url": ..., "model": ..., **fields}` JSON."""

    def __init__(self, webhook_url: str = "", timeout_seconds: float = 5.0, owner: str = "",
                 runbook_url: str = "", model: str = ""):
        self.webhook_url = webhook_url
        self.timeout_seconds = timeout_seconds
        self.owner, self.runbook_url, self.model = owner, runbook_url, model

    @classmethod
    def for_spec(cls, spec: Any, webhook_url: str = "", timeout_seconds: float = 5.0) -> Alerts:
        """Alerts that page `spec.owner` with `spec.runbook_url`, naming `spec.name`."""
        return cls(webhook_url, timeout_seconds, owner=spec.owner or "",
                   runbook_url=spec.runbook_url or "", model=spec.name)

    def _paging(self) -> dict[str, str]:
        return {k: v for k, v in (("owner", self.owner), ("runbook_url", self.runbook_url),
                                  ("model", self.model)) if v}

    def send(self, text: str, log: logging.Logger | None = None, **fields: str) -> bool:
        """Log the alert; post it when a webhook is set. Returns whether the webhook accepted it.

        A webhook that is down must not take the sensor down with it: the failure is logged.
        """
        fields = {**self._paging(), **fields}
        if fields.get("owner"):
            text += f" [owner: {fields['owner']}" + (
                f", runbook: {fields['runbook_url']}]" if fields.get("runbook_url") else "]")
        (log or logging.getLogger("mlops_pipeline.alerts")).error(f"ALERT: {text}")
        if not self.webhook_url:
            return False
        body = json.dumps({"text": text, **fields}).encode()
        request = urllib.request.Request(
            self.webhook_url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return 200 <= response.status < 300
        except OSError as exc:
            (log or logging.getLogger("mlops_pipeline.alerts")).warning(
                f"alert webhook {self.webhook_url} failed: {exc}"
            )
            return False

    def send_verdict(self, verdict: Any, log: logging.Logger | None = None, **fields: str) -> bool:
        """Send THE verdict (`monitoring.verdict.Verdict`) in the board's words: its one line,
        with level, rule and command as fields."""
        return self.send(verdict.line(), log=log, kind="verdict", level=verdict.level,
                         rule=verdict.rule, command=verdict.command, **fields)
