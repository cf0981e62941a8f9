"""Stopping the servers we start (Dagster, MLflow, serving): the whole process group, by PID.

Every child is started with `start_new_session=True`, so its PID is its process-group id and
SIGTERM reaches the workers it spawned too; whatever is still alive after the grace period gets
SIGKILL. The CLI, the tests and the benchmarks all stop their processes this one way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def stop_group(*procs: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM every group at once, wait up to `timeout` for each, then SIGKILL what lingers."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
