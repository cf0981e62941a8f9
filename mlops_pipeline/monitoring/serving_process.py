"""The running serving process, as seen by monitoring: its Prometheus `/metrics`."""

from __future__ import annotations

import urllib.request


class ServingProcess:
    """The server at `url` (`MLOPS_SERVING_URL`, e.g. http://127.0.0.1:8080); empty when no server
    is deployed, and then every reading is None rather than an error."""

    def __init__(self, url: str = "", timeout_seconds: float = 3.0):
        self.url = url
        self.timeout_seconds = timeout_seconds

    def metrics_text(self) -> str | None:
        """The server's metrics, or None when it is not configured or not answering."""
        if not self.url:
            return None
        try:
            with urllib.request.urlopen(f"{self.url.rstrip('/')}/metrics", timeout=self.timeout_seconds) as r:
                return r.read().decode()
        except OSError:
            return None
