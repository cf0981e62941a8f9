"""Servers we start are stopped with their whole process group, even a child that ignores SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlops_pipeline.processes import group_alive, stop_group


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead for our purpose
        return f.read().split()[2] != "Z"


def _read_pid(pidfile, timeout: float = 10.0) -> int:
    """The PID a child wrote to `pidfile`, once it has written it."""
    deadline = time.monotonic() + timeout
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return int(pidfile.read_text())


def _kill_leftovers(proc: subprocess.Popen, pidfile: Path) -> None:
    """What a failed test may leave running: the process it started and the worker it recorded."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if pidfile.exists() and pidfile.read_text().strip() and _alive(int(pidfile.read_text())):
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_stop_group_reaches_children_and_kills_what_ignores_sigterm(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = f"trap '' TERM; sleep 60 & echo $! > {pidfile}; wait"
    proc = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    child = _read_pid(pidfile)
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
    child = _read_pid(pidfile)
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
    grandchild = _read_pid(pidfile)
    assert _alive(server) and _alive(grandchild) and _alive(watcher)

    parent.send_signal(signal.SIGKILL)
    parent.wait()

    deadline = time.monotonic() + 15
    while any(_alive(p) for p in (server, grandchild, watcher)):
        assert time.monotonic() < deadline, "a server outlived the kill -9 of its parent"
        time.sleep(0.1)


SUPERVISOR = """
import subprocess, sys, time
from mlops_pipeline.processes import stop_group, stop_on_signals
stop_on_signals()
# A server that ignores SIGTERM for 60 s, with a worker in its group that does too.
server = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 60 & echo $! > " + sys.argv[1] + "; wait"],
                          start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    print(server.pid, flush=True)  # inside the try: a SIGINT from here on is handled
    while True:
        time.sleep(0.1)
except KeyboardInterrupt:
    print("stopping", flush=True)
finally:
    stop_group(server, timeout=60)
print("stopped", flush=True)
"""


def test_a_second_sigint_during_cleanup_hurries_it_quietly_and_leaves_no_child(tmp_path):
    """A supervisor stopped by SIGINT from a script, a second SIGINT arriving while its servers
    shut down: no KeyboardInterrupt traceback out of `stop_group`, the cleanup finishes at once
    (SIGKILL instead of the rest of the grace period) and no process of the group is left."""
    import signal
    import sys

    pidfile = tmp_path / "worker.pid"
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(pidfile)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        server = int(sup.stdout.readline())
        worker = _read_pid(pidfile)
        sup.send_signal(signal.SIGINT)
        assert sup.stdout.readline().strip() == "stopping"
        time.sleep(0.5)  # inside stop_group: the server ignores SIGTERM for 60 s
        assert sup.poll() is None and _alive(worker)
        started = time.monotonic()
        sup.send_signal(signal.SIGINT)
        out, err = sup.communicate(timeout=20)
        assert time.monotonic() - started < 10, "the second signal did not hurry the cleanup"
        assert sup.returncode == 0, err
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        assert out.strip() == "stopped"
        assert not group_alive(server) and not _alive(worker), "a child outlived its supervisor"
    finally:
        _kill_leftovers(sup, pidfile)


PLAIN = """
import signal, subprocess, sys
from mlops_pipeline.processes import stop_group
# Python's own SIGINT handler, even when this test runs where SIGINT is inherited ignored (a
# background job of a non-interactive shell, as CI may start it).
signal.signal(signal.SIGINT, signal.default_int_handler)
server = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 60 & echo $! > " + sys.argv[1] + "; wait"],
                          start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(server.pid, flush=True)
sys.stdin.readline()
try:
    stop_group(server, timeout=60)
except KeyboardInterrupt:
    print("interrupted after cleanup", flush=True)
"""


def test_stop_group_finishes_its_cleanup_before_a_sigint_interrupts_the_caller(tmp_path):
    """Outside `stop_on_signals` (Python's own SIGINT handler) a SIGINT during `stop_group` hurries
    the cleanup too, and reaches the caller as KeyboardInterrupt only once every child is gone."""
    import signal
    import sys

    pidfile = tmp_path / "worker.pid"
    proc = subprocess.Popen([sys.executable, "-c", PLAIN, str(pidfile)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        server = int(proc.stdout.readline())
        worker = _read_pid(pidfile)
        proc.stdin.write("\n")
        proc.stdin.flush()
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert time.monotonic() - started < 10
        assert out.strip() == "interrupted after cleanup", err
        assert not group_alive(server) and not _alive(worker)
    finally:
        _kill_leftovers(proc, pidfile)


def test_a_test_run_killed_with_sigkill_leaves_no_server_behind(tmp_path):
    """A CI timeout kills pytest with SIGKILL mid-fixture: no `finally` runs, yet the servers the
    run had started (in their own process group or in pytest's) are stopped by the session's
    watcher (`processes.watch_descendants`, started by the root conftest)."""
    pids_file = tmp_path / "pids"
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(Path(__file__).parent / "killed_run_fixture.py")],
        env={**os.environ, "KILLED_RUN_PIDS": str(pids_file)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (pids_file.exists() and pids_file.read_text().endswith("\n")):
            assert run.poll() is None and time.monotonic() < deadline, "the inner run never started"
            time.sleep(0.1)
        servers = [int(p) for p in pids_file.read_text().split()]
        time.sleep(1.5)  # the watcher's tree is at most one poll old: let it see both servers
        assert all(_alive(p) for p in servers)
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in servers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in servers), "a server outlived the killed test run"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
