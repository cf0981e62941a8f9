"""The running serving process, as seen by monitoring: its Prometheus `/metrics`.

The server is where `MLOPS_SERVING_URL` says; without it, where the running server said it listens:
`mlops-pipeline serve` writes its URL and pid to a state file (`serving.settings.state_path`;
`Settings.serving_state_path` names the same file from the settings handed in).
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path


def live_server_url(state_file: Path) -> str | None:
    """The URL a running server recorded in `state_file`; None when there is no such file, it is
    unreadable, or the process that wrote it is gone (a server killed before it could remove it)."""
    try:
        state = json.loads(Path(state_file).read_text())
        pid, url = int(state["pid"]), str(state["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return url or None


class ServingProcess:
    """The server at `url` (`MLOPS_SERVING_URL`, e.g. http://127.0.0.1:8080); empty when no server
    is deployed, and then every reading is None rather than an error.

    `state_path(model_name)` is where a server of that model records where it listens; with no
    `url`, `for_model` finds a running server there."""

    def __init__(self, url: str = "", timeout_seconds: float = 3.0,
                 state_path: Callable[[str], Path] | None = None, source: str = ""):
        self.url = url
        self.timeout_seconds = timeout_seconds
        self.state_path = state_path
        #: Where `url` came from ("MLOPS_SERVING_URL", "state file PATH"), or where it was looked for.
        self.source = source or ("MLOPS_SERVING_URL" if url else "MLOPS_SERVING_URL not set")

    def for_model(self, model_name: str) -> ServingProcess:
        """This client when a URL is configured; else one at the URL a live server of `model_name`
        wrote to its state file (an empty one, saying where it looked, when none is running)."""
        if self.url or self.state_path is None:
            return self
        path = self.state_path(model_name)
        url = live_server_url(path)
        source = f"state file {path}" if url else (
            f"MLOPS_SERVING_URL not set and no running server recorded in {path}")
        return ServingProcess(url or "", self.timeout_seconds, None, source)

    def metrics_text(self) -> str | None:
        """The server's metrics, or None when it is not configured or not answering."""
        if not self.url:
            return None
        try:
            with urllib.request.urlopen(f"{self.url.rstrip('/')}/metrics", timeout=self.timeout_seconds) as r:
                return r.read().decode()
        except OSError:
            return None
