"""Servers we start are stopped with their whole process group, even a child that ignores SIGTERM."""

from __future__ import annotations

import os
import subprocess
import time

from mlops_pipeline.processes import group_alive, stop_group


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
    assert not _alive(child)


def test_stop_group_returns_only_when_a_slow_worker_of_the_group_has_exited(tmp_path):
    """The leader exits at once on SIGTERM; its worker takes a while to finish. `stop_group` must not
    return in between (that race let a Dagster code server outlive `up`)."""
    pidfile = tmp_path / "worker.pid"
    worker = "trap 'sleep 1.5; exit 0' TERM; while true; do sleep 0.1; done"
    script = f"bash -c \"{worker}\" & echo $! > {pidfile}; trap 'exit 0' TERM; wait"
    proc = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pidfile.read_text())
    stop_group(proc, timeout=10)
    assert proc.poll() is not None
    assert not _alive(child)
    assert not group_alive(proc.pid)


PARENT = """
import subprocess, sys, time
from mlops_pipeline.processes import default_signals, watch_children
server = subprocess.Popen(["bash", "-c", "sleep 120 & echo $! > " + sys.argv[1] + "; wait"],
                          start_new_session=True, preexec_fn=default_signals)
watcher = watch_children([server], poll_s=0.1)
print(server.pid, watcher.pid, flush=True)
time.sleep(120)
"""


def test_servers_do_not_outlive_a_kill_9_of_the_process_that_started_them(tmp_path):
    """`up` killed with -9 runs no handler: the watcher it started stops the servers' groups."""
    import signal
    import sys

    pidfile = tmp_path / "grandchild.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pidfile)], stdout=subprocess.PIPE, text=True)
    server, watcher = map(int, parent.stdout.readline().split())
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    assert _alive(server) and _alive(grandchild) and _alive(watcher)

    parent.send_signal(signal.SIGKILL)
    parent.wait()

    deadline = time.monotonic() + 15
    while any(_alive(p) for p in (server, grandchild, watcher)):
        assert time.monotonic() < deadline, "a server outlived the kill -9 of its parent"
        time.sleep(0.1)
