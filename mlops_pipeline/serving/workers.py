"""What the worker processes of one server share: a reload signal and each worker's status.

One serving process is bound by one core: JSON, validation and capture hold the GIL, and the model
runs best with one OpenMP thread per process. `mlops-pipeline serve --workers N` therefore runs N
uvicorn workers on one port, each with its own socket (SO_REUSEPORT: the kernel spreads connections
over them), model, micro-batcher and capture writer; `supervise` starts them and replaces one that
dies. They still act as one server:

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

Beyond the group, a running server leaves one file for the CLI: its state file (URL and pid,
`write_state`), so `promote` and `rollback` find it without being told.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GROUP_ENV = "MLOPS_SERVE_GROUP_DIR"
SETTINGS_ENV = "MLOPS_SERVE_SETTINGS_JSON"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def create_group_dir(model_name: str) -> Path:
    """A fresh directory for one server's worker group (status files and metrics inside)."""
    path = Path(tempfile.mkdtemp(prefix=f"mlops-serve-{model_name}-"))
    (path / "workers").mkdir()
    (path / "metrics").mkdir()
    return path


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Replace `path` atomically, through a temp name of this process's own: several processes
    (workers, replicas sharing a data dir) may write the same file at the same moment."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


def write_state(path: Path, url: str, model_name: str) -> None:
    """Record a running server's URL and pid in its state file (`settings.state_path`), where
    `promote` and `rollback` find it: written by the one serving process, or by the supervisor of
    several workers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"url": url, "pid": os.getpid(), "model_name": model_name})


def remove_state(path: Path) -> None:
    """Remove the state file if this process wrote it: a worker never removes its supervisor's,
    and a server never removes the file of another one started since."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


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
        """The group the supervisor handed this worker (`MLOPS_SERVE_GROUP_DIR`), if any."""
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
        write_json(self.reload_path, {"token": token, "asked": asked})
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
        """Record which versions this worker serves and when it last polled (after each poll)."""
        write_json(self.status_dir / f"{self.pid}.json", {
            "pid": self.pid, "champion_version": champion, "challenger_version": challenger,
            "polled_at": polled_at,
        })

    def leave(self) -> None:
        """This worker is stopping: drop its status."""
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


# ---- the supervisor ------------------------------------------------------------------------------

#: A worker that exits with this code failed before serving (uvicorn's convention): restarting it
#: would fail the same way, so the server stops instead.
STARTUP_FAILURE = 3


def _socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _worker_socket(host: str, port: int) -> socket.socket:
    """A worker's own socket on the shared port (SO_REUSEPORT), bound but not listening yet.

    The kernel spreads new connections over the *listening* sockets of the port by hash, and a
    worker's uvicorn listens only after its lifespan startup, which waits for its first registry
    poll: so no connection is ever handed to a worker that cannot answer. (With one shared socket
    instead, the first worker to wake accepts every pending connection, as asyncio and libuv accept
    greedily: a client opening its keep-alive connections at once pinned all of them, and all its
    traffic, to one worker; see docs/benchmarks.md.)
    """
    return _socket(host, port, reuse_port=True)


class PortInUse(OSError):
    """The port is taken: by another server, or by the workers of one still stopping."""


def check_port_free(host: str, port: int) -> None:
    """A plain bind first: another server already on the port with SO_REUSEPORT (same user) would
    otherwise share it with us silently. Raises PortInUse, naming the port, if it is taken."""
    try:
        _socket(host, port, reuse_port=False).close()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise PortInUse(
            f"port {port} on {host} is already in use: another server is running there (see "
            f"`ss -ltnp 'sport = :{port}'`), or one is still stopping. Stop it, or pass --port."
        ) from None


#: prctl(2) option: the signal this process gets when its parent dies (Linux).
PR_SET_PDEATHSIG = 1


def exit_with_parent(parent: int) -> None:
    """Make this worker stop (SIGTERM: a graceful uvicorn shutdown) when its supervisor dies, even
    by SIGKILL: orphaned workers would keep serving, unsupervised, on a port a restart needs.
    Linux: the kernel sends the signal (prctl PR_SET_PDEATHSIG); everywhere: a thread also checks
    the parent pid twice a second. A parent already gone before this ran means stop now."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _run_worker(sock: socket.socket, app: str, parent: int) -> None:
    """A worker process: one uvicorn server on its own socket (settings come from the env)."""
    import uvicorn

    exit_with_parent(parent)
    config = uvicorn.Config(app, factory=True, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=10, log_config=None)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def supervise(host: str, port: int, workers: int, app: str) -> int:
    """Run `workers` worker processes until SIGTERM/SIGINT; replace one that dies.

    A dead worker's socket is closed at once, so the kernel stops handing it connections (any
    waiting in it are reset) and the live workers take the traffic; its replacement gets a new
    socket, listening once it has loaded a model. Stopping sends SIGTERM to every worker (a
    graceful uvicorn shutdown: requests finish, captures are committed) and SIGKILL to any still
    alive after 20 s. Returns the exit status: 0, or STARTUP_FAILURE when a worker could not start.
    """
    import multiprocessing
    import multiprocessing.connection

    ctx = multiprocessing.get_context("spawn")
    check_port_free(host, port)
    sockets = [_worker_socket(host, port) for _ in range(workers)]
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}

    def start(i: int) -> Any:
        proc = ctx.Process(target=_run_worker, args=(sockets[i], app, os.getpid()),
                           name=f"mlops-serve-worker-{i}")
        proc.start()
        return proc

    procs = [start(i) for i in range(workers)]
    log.info("serving with %d workers: pids %s", workers, [p.pid for p in procs])
    status = 0
    try:
        while not stop.is_set():
            # Wakes the moment a worker dies (its sentinel), so its socket is closed within ms.
            multiprocessing.connection.wait([p.sentinel for p in procs], timeout=0.2)
            for i, proc in enumerate(procs):
                if proc.is_alive():
                    continue
                if proc.exitcode == STARTUP_FAILURE:
                    log.error("worker %s failed to start: stopping the server", proc.pid)
                    status = STARTUP_FAILURE
                    stop.set()
                    break
                log.warning("worker %s exited (%s): starting a new one", proc.pid, proc.exitcode)
                sockets[i].close()
                sockets[i] = _worker_socket(host, port)
                procs[i] = start(i)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + 20
        for proc in procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        for sock in sockets:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
