"""Where alerts go: always the log, and a webhook (Slack-compatible JSON) when one is configured."""

from __future__ import annotations

import json
import logging
import urllib.request


class Alerts:
    """Logs every alert; with `webhook_url` (`MLOPS_ALERT_WEBHOOK_URL`) also POSTs it as
    `{"text": ..., **fields}` JSON."""

    def __init__(self, webhook_url: str = "", timeout_seconds: float = 5.0):
        self.webhook_url = webhook_url
        self.timeout_seconds = timeout_seconds

    def send(self, text: str, log: logging.Logger | None = None, **fields: str) -> bool:
        """Log the alert; post it when a webhook is set. Returns whether the webhook accepted it.

        A webhook that is down must not take the sensor down with it: the failure is logged.
        """
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
