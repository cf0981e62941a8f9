"""Servers we start are stopped with their whole process group, even a child that ignores SIGTERM."""

from __future__ import annotations

import os
import subprocess
import time

from mlops_pipeline.processes import stop_group


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead for our purpose
        return f.read().split()[2] != "Z"


def test_stop_group_reaches_children_and_kills_what_ignores_sigterm(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = f"trap '' TERM; sleep 60 & echo $! > {pidfile}; wait"
    proc = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pidfile.read_text())
    started = time.monotonic()
    stop_group(proc, timeout=1)
    assert proc.poll() is not None
    assert time.monotonic() - started < 8
    time.sleep(0.2)
    assert not _alive(child)
