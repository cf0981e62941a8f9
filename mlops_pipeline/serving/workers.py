"""What the worker processes of one server share: a reload signal and each worker's status.

One serving process is bound by one core: JSON, validation and capture hold the GIL, and the model
runs best with one OpenMP thread per process. `mlops-pipeline serve --workers N` therefore runs N
uvicorn workers on one port (uvicorn's supervisor spawns, watches and restarts them), each with its
own model, micro-batcher and capture writer. They still act as one server:

- **reload**: `POST /admin/reload` reaches one worker. It writes a new token to the group's reload
  file; every worker's model watcher reads that small file between polls (every 50 ms) and
  re-reads the registry at once. The answering worker waits until every live worker has polled
  since, so a rollback is complete when the call returns.
- **status**: after each poll a worker writes which versions it serves to `workers/<pid>.json`;
  `/health` lists them all, so a client can tell when the whole server answers with a version.
- **metrics**: Prometheus' multiprocess mode (`metrics/`, one set of files per worker process),
  aggregated by whichever worker answers `/metrics`.

The group directory is created by the supervisor (a fresh temporary directory per server, so two
servers of the same model never mix) and handed to the workers as `MLOPS_SERVE_GROUP_DIR`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

GROUP_ENV = "MLOPS_SERVE_GROUP_DIR"
SETTINGS_ENV = "MLOPS_SERVE_SETTINGS_JSON"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def create_group_dir(model_name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"mlops-serve-{model_name}-"))
    (path / "workers").mkdir()
    (path / "metrics").mkdir()
    return path


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkerGroup:
    """This worker's view of its group (built in each worker from `MLOPS_SERVE_GROUP_DIR`)."""

    def __init__(self, directory: Path | str, pid: int | None = None):
        self.directory = Path(directory)
        self.pid = pid or os.getpid()
        self.reload_path = self.directory / "reload"
        self.status_dir = self.directory / "workers"
        self.status_dir.mkdir(parents=True, exist_ok=True)
        self._seen = self._token()

    @classmethod
    def from_env(cls) -> WorkerGroup | None:
        path = os.environ.get(GROUP_ENV)
        return cls(path) if path else None

    # ---- reload ------------------------------------------------------------------------------
    def _token(self) -> str:
        try:
            return self.reload_path.read_text()
        except OSError:
            return ""

    def request_reload(self) -> float:
        """Ask every worker to re-read the registry now; returns the time of the ask."""
        asked = time.time()
        token = f"{time.time_ns()}-{self.pid}"
        _write_json(self.reload_path, {"token": token, "asked": asked})
        self._seen = self._token()  # this worker polls on its own
        return asked

    def reload_requested(self) -> bool:
        """True once per new ask by any worker (one read of a few bytes)."""
        token = self._token()
        if token == self._seen:
            return False
        self._seen = token
        return True

    # ---- status ------------------------------------------------------------------------------
    def publish(self, champion: str | None, challenger: str | None, polled_at: float | None) -> None:
        _write_json(self.status_dir / f"{self.pid}.json", {
            "pid": self.pid, "champion_version": champion, "challenger_version": challenger,
            "polled_at": polled_at,
        })

    def leave(self) -> None:
        with contextlib.suppress(OSError):
            (self.status_dir / f"{self.pid}.json").unlink()

    def statuses(self) -> list[dict[str, Any]]:
        """Every live worker's last published status, by pid (a dead worker's file is ignored)."""
        out = []
        for path in sorted(self.status_dir.glob("*.json")):
            try:
                status = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if _alive(int(status.get("pid", 0))):
                out.append(status)
        return sorted(out, key=lambda s: s["pid"])

    def wait_polled_since(self, since: float, timeout: float) -> bool:
        """Until every live worker has completed a poll that started after `since`."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = self.statuses()
            if statuses and all((s.get("polled_at") or 0) >= since for s in statuses):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
