"""Stopping the servers we start (Dagster, MLflow, serving): the whole process group, by PID.

Every child is started with `start_new_session=True`, so its PID is its process-group id and
SIGTERM reaches the workers it spawned too; whatever is still alive after the grace period gets
SIGKILL. The CLI, the tests and the benchmarks all stop their processes this one way.

A supervisor (`mlops-pipeline up`) also makes sure its servers end with it: `stop_on_signals`
turns SIGTERM/SIGINT into KeyboardInterrupt (even when SIGINT was inherited ignored),
`default_signals` gives the servers default signal handling back, and `watch_children` starts a
small watcher that stops their groups when the supervisor dies without running any handler
(`kill -9`).

Stopping is quiet: only the first SIGINT/SIGTERM interrupts; one that arrives while the servers are
being stopped hurries that cleanup (what is still alive gets SIGKILL at once) instead of raising
inside it, so no traceback is printed and no child outlives the supervisor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

#: Set by a SIGINT/SIGTERM that arrives during cleanup: stop waiting, SIGKILL what is left.
_hurry = threading.Event()
#: Whether `stop_on_signals`' handler has raised its one KeyboardInterrupt already.
_interrupted = threading.Event()
#: How many `stop_group` calls are running (a signal then hurries rather than interrupts).
_stopping = [0]
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_group(*procs: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM every group at once and return only when each whole group is gone.

    The leader exiting is not enough: its workers (Dagster's code server, gunicorn's workers) are
    in the same group and may take longer. What still lingers after `timeout` gets SIGKILL — at
    once when a SIGINT/SIGTERM arrives meanwhile: such a signal hurries the cleanup and never
    interrupts it (see `_shielded`), so no group outlives an impatient second Ctrl-C.
    """
    with _shielded():
        _stop_groups(procs, timeout)


def _stop_groups(procs: tuple[subprocess.Popen, ...], timeout: float) -> None:
    import time

    for proc in procs:
        if proc.poll() is None or group_alive(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        while (proc.poll() is None or group_alive(proc.pid)) and time.monotonic() < deadline:
            if _hurry.wait(0.05):
                break
        if proc.poll() is None or group_alive(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            _wait_group_gone(proc.pid, 5.0)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """While stopping: SIGINT/SIGTERM set `_hurry` instead of raising in the middle of the cleanup.

    Under `stop_on_signals` its own handler does that (the signal was a request to stop, being
    served). Any other handler is replaced for the duration and the signals that arrived are
    handed to it afterwards — the cleanup finished first, then e.g. KeyboardInterrupt. Off the
    main thread (where handlers cannot be set) nothing changes.
    """
    caught: list[int] = []
    previous: dict[int, Any] = {}

    def _record(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)
        _hurry.set()

    _stopping[0] += 1
    try:
        if threading.current_thread() is threading.main_thread():
            for signum in _STOP_SIGNALS:
                handler = signal.getsignal(signum)
                if handler not in (_interrupt, signal.SIG_IGN, None):  # ignored stays ignored
                    previous[signum] = signal.signal(signum, _record)
        yield
    finally:
        _stopping[0] -= 1
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if previous and not _stopping[0]:
            _hurry.clear()  # not a `stop_on_signals` process: the next stop waits its grace again
        _redeliver(caught, previous)


def _redeliver(caught: list[int], previous: dict[int, Any]) -> None:
    """Hand the signals caught during a shielded stop to the handlers they were meant for."""
    for signum in dict.fromkeys(caught):
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), signum)


def _wait_group_gone(pgid: int, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def default_signals() -> None:
    """`preexec_fn` for the servers we start: SIGINT and SIGTERM back to their defaults.

    Ignored signals survive `exec`: a process started in the background of a non-interactive shell
    inherits SIGINT ignored, and Dagster then ignores SIGTERM too (what `env --default-signal` fixes
    in a shell).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """`stop_on_signals`' handler: the first signal raises KeyboardInterrupt; a later one, or one
    that arrives while `stop_group` runs, hurries the cleanup instead of breaking into it."""
    if _interrupted.is_set() or _stopping[0]:
        _hurry.set()
        return
    _interrupted.set()
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """Make SIGTERM and SIGINT raise KeyboardInterrupt in this process, so `finally` blocks stop
    its servers — also when SIGINT was inherited ignored (a background job of a script). Only the
    first signal raises; the next ones hurry `stop_group` (SIGKILL now) and never interrupt it."""
    _interrupted.clear()
    _hurry.clear()
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def watch_children(procs: list[subprocess.Popen], poll_s: float = 0.5) -> subprocess.Popen:
    """Start a watcher that stops `procs`' process groups when this process dies, however it dies.

    `kill -9` runs no handler and no `finally`; the watcher, a child of this process in its own
    session, sees its parent change (re-parented) and terminates the groups (SIGTERM, then SIGKILL
    after a grace period). It exits on its own once every group is gone.
    """
    import sys

    pgids = [str(p.pid) for p in procs]
    return subprocess.Popen(
        [sys.executable, "-m", "mlops_pipeline.processes", str(os.getpid()), str(poll_s), *pgids],
        start_new_session=True, stdin=subprocess.DEVNULL,
    )


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` still runs; zombies (dead, waiting to be reaped) do not count.

    Reads /proc on Linux, since `killpg(pgid, 0)` also succeeds while a dead orphan waits for
    init to reap it; elsewhere falls back to that signal probe.
    """
    proc = "/proc"
    if not os.path.isdir(proc):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return any(group == pgid for _, group in _live_processes().values())


def _live_processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live process (zombies excluded), from /proc."""
    out: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            out[int(entry)] = (int(fields[1]), int(fields[2]))
    return out


def _stat(pid: int) -> list[bytes] | None:
    """The fields after `comm` of /proc/PID/stat (state, ppid, pgrp, ...); None when the process
    is gone or a zombie. `comm` may hold spaces and parentheses, hence the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    return None if fields[0] in (b"Z", b"X") else fields


def _watch(parent: int, poll_s: float, pgids: list[int], grace_s: float = 10.0) -> None:
    import time

    while os.getppid() == parent:
        if not any(group_alive(g) for g in pgids):
            return
        time.sleep(poll_s)
    for g in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(g, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(group_alive(g) for g in pgids):
        time.sleep(0.2)
    for g in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(g, signal.SIGKILL)


def watch_descendants(poll_s: float = 1.0) -> subprocess.Popen:
    """Start a watcher that, when this process dies however it dies, stops every process it had
    started (directly or not) that is still running: each one's process group, or the process
    itself when it shares this process's group (never this group: it holds whoever started us).

    For a process that starts servers in many places (a test session): a `kill -9` of it leaves
    nothing listening. The watcher re-reads the tree every `poll_s` seconds, so only processes
    alive a moment before the death are stopped (no reused PID is ever signalled)."""
    import sys

    return subprocess.Popen([sys.executable, "-m", "mlops_pipeline.processes", "--descendants",
                             str(os.getpid()), str(poll_s)], start_new_session=True,
                            stdin=subprocess.DEVNULL)


def _tree(root: int) -> dict[int, int]:
    """pid -> pgid of every live process descending from `root`."""
    processes = _live_processes()
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        current = frontier.pop()
        for pid, (ppid, pgid) in processes.items():
            if ppid == current and pid not in found:
                found[pid] = pgid
                frontier.append(pid)
    return found


def _watch_descendants(parent: int, poll_s: float, grace_s: float = 10.0) -> None:
    import time

    me, own_group = os.getpid(), os.getpgid(parent)
    last: dict[int, int] = {}
    while os.getppid() == parent:
        last = {pid: g for pid, g in _tree(parent).items() if pid != me}
        time.sleep(poll_s)
    groups = {g for g in last.values() if g != own_group and g != os.getpgid(0)}
    loose = [pid for pid, g in last.items() if g == own_group]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for g in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g, sig)
        for pid in loose:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 0)
        while time.monotonic() < deadline and (any(group_alive(g) for g in groups) or any(
                _alive(pid) for pid in loose)):
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    return _stat(pid) is not None


if __name__ == "__main__":
    import sys

    if sys.argv[1] == "--descendants":
        _watch_descendants(int(sys.argv[2]), float(sys.argv[3]))
    else:
        _parent, _poll, *_groups = sys.argv[1:]
        _watch(int(_parent), float(_poll), [int(g) for g in _groups])
