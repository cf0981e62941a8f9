"""Helpers every benchmark shares: processes on free loopback ports, stopped by PID; a registry of
real versions trained by the pipeline in a temporary data dir; load generation; tables.

Everything here is deliberately dependency-free beyond the project's own environment (psutil comes
with mlflow/dagster; `wrk` is optional, with an async httpx load generator as fallback).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MODEL = "flights_delay"
BENCH_DIR = Path(__file__).resolve().parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------- machine and processes

def wait_quiet(skip: bool = False, poll: float = 30.0, max_wait: float = 3600.0) -> None:
    """Measure only on a quiet machine: wait until no pytest runs (the machine is shared)."""
    if skip:
        return
    deadline = time.time() + max_wait
    while time.time() < deadline:
        out = subprocess.run(["pgrep", "-f", "pytest"], capture_output=True, text=True).stdout.split()
        others = [p for p in out if int(p) != os.getpid()]
        if not others:
            return
        print(f"waiting for a quiet machine: pytest running ({len(others)} processes)...", flush=True)
        time.sleep(poll)
    print("warning: machine still busy; measuring anyway", file=sys.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Own session, so the whole process group (uvicorn workers, bash -c) is stopped by our PID."""
    return subprocess.Popen(list(cmd), env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    from mlops_pipeline.processes import stop_group

    stop_group(proc, timeout=timeout)


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> float:
    """Seconds until `url` answers 200; raises with the log's tail if the process dies first."""
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return time.perf_counter() - started
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


@dataclass
class Measured:
    seconds: float
    max_rss: int  # bytes, the child's peak resident set
    returncode: int
    output: str
    cpu_seconds: float = 0.0  # user + system of the child (steal time on a shared VM not included)


def run_measured(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 3600.0,
                 cwd: Path | None = None) -> Measured:
    """Wall time and peak RSS of one child process (os.wait4 gives that child's own rusage)."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                start_new_session=True)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return Measured(seconds, usage.ru_maxrss * 1024, proc.returncode, out.read().decode(errors="replace"),
                        usage.ru_utime + usage.ru_stime)


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children (uvicorn workers), for CPU per process."""
    import psutil

    try:
        root = psutil.Process(pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total
    except psutil.Error:
        return 0.0


# ---------------------------------------------------------------- data dir and registry

def bench_env(root: Path) -> dict[str, str]:
    """The embedded default (SQLite MLflow, local storage) inside a temporary data dir."""
    env = {**os.environ, "MLOPS_DATA_DIR": str(root / "data"), "DAGSTER_HOME": str(root / "dagster_home"),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    # MLFLOW_REGISTRY_URI too: MLflow exports the process-wide registry URI, so a parent that
    # talked to another registry would point `models:/` URIs here at that one.
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLOPS_DATASET_CONFIG", "MLOPS_SERVE_URL",
                "MLOPS_SERVING_URL", "MLOPS_PREDICTIONS_URL", "MLOPS_PROFILE", "MLOPS_STORAGE_ROOT",
                "MLOPS_SERVE_TOKEN"):
        env.pop(var, None)
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "dagster_home").mkdir(parents=True, exist_ok=True)
    return env


#: Set by the smoke tests: the scripts that train v1/v2 (serving, batch, cost, rollback) share one
#: trained data dir instead of each training its own (they run one after another).
SHARED_ROOT = "MLOPS_BENCH_SHARED_ROOT"
SMOKE_HELP = "tiny sizes, a few seconds, no waiting for a quiet machine (CI runs it: the script cannot rot)"


def bench_args(parser: argparse.ArgumentParser, sample: float, connections: int | None = None,
               records: int | None = None, tool: bool = False) -> argparse.ArgumentParser:
    """The options the benchmarks share: the training sample (`register_versions`), the load
    (`--connections`, `--records` cycled, `--tool`) when the script takes them, not waiting for a
    quiet machine, keeping the data dir, `--smoke`."""
    if connections is not None:
        parser.add_argument("--connections", type=int, default=connections)
    parser.add_argument("--sample", type=float, default=sample, help="share of each month used to train")
    if records is not None:
        parser.add_argument("--records", type=int, default=records, help="distinct holdout records cycled")
    if tool:
        parser.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    return parser


def smoke(args: Any, **tiny: Any) -> Any:
    """Under `--smoke`, replace the sizes by tiny ones and measure at once; the code path is the
    real one end to end, only the figures mean nothing."""
    if getattr(args, "smoke", False):
        for name, value in tiny.items():
            setattr(args, name, value)
        args.no_wait = True
    return args


@contextlib.contextmanager
def trained_root(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A temporary data dir for `register_versions`, or the shared one the smoke tests name."""
    shared = os.environ.get(SHARED_ROOT)
    if shared:
        Path(shared).mkdir(parents=True, exist_ok=True)
        yield Path(shared)
        return
    with temp_root(prefix, keep) as root:
        yield root


@contextlib.contextmanager
def trained(prefix: str, args: Any, what: str = "v1/v2") -> Iterator[tuple[Path, list[dict]]]:
    """What the serving benchmarks start from: a data dir (`trained_root`: the smoke tests' shared
    one, or a temporary one kept with `--keep`) with v1/v2 registered (`register_versions` on
    `--sample`), then a quiet machine (`--no-wait` skips waiting); yields it and v2's holdout rows."""
    with trained_root(prefix, getattr(args, "keep", False)) as root:
        print(f"training and registering {what} through the pipeline...", flush=True)
        records = register_versions(root, args.sample)
        wait_quiet(args.no_wait)
        yield root, records


@contextlib.contextmanager
def temp_root(prefix: str, keep: bool = False) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    try:
        yield root
    finally:
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def use_env(env: dict[str, str]) -> None:
    """Point this process (the in-process pipeline, the MLflow client) at the benchmark's data dir."""
    os.environ.clear()
    os.environ.update(env)


def tracking_uri(root: Path) -> str:
    return f"sqlite:///{root / 'data' / 'mlflow' / 'mlflow.db'}"


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_assets(assets: list[str]) -> Any:
    import dagster as dg

    from mlops_pipeline.defs.definitions import build_definitions

    job = build_definitions().resolve_job_def("mlops_loop")
    job = job.get_subset(asset_selection={dg.AssetKey(a) for a in assets})
    with dg.DagsterInstance.ephemeral() as instance:
        return job.execute_in_process(instance=instance, raise_on_error=True, run_config=QUIET)


def register_versions(root: Path, sample: float = 1.0) -> list[dict]:
    """v1 = champion (Jan-Feb), v2 = challenger (Jan-Mar), both trained and registered by the
    pipeline itself; returns v2's holdout rows as a client sends them (JSON records). A data dir
    that already holds them (the smoke tests' shared one) is reused as it is."""
    from mlops_pipeline.data.landing import land_months
    from mlops_pipeline.data.preparation import SPLIT_COLUMN
    from mlops_pipeline.spec import load_spec

    use_env(bench_env(root))
    done = root / "holdout.json"
    if done.exists():
        return json.loads(done.read_text())
    landing = root / "data" / "landing" / "flights"
    land_months(landing, (1, 2), sample)
    run_assets(["dataset_snapshot", "training_features", "trained_model", "model_version", "champion_model"])
    land_months(landing, (3,), sample)
    second = run_assets(["dataset_snapshot", "training_features", "trained_model", "model_version"])
    spec = load_spec()
    import pandas as pd

    frame = pd.read_parquet(second.output_for_node("training_features").location)  # a FeaturesInfo
    holdout = frame[frame[SPLIT_COLUMN] == "holdout"][spec.features.columns].reset_index(drop=True)
    records = holdout.to_json(orient="records", date_format="iso")
    done.write_text(records)
    return json.loads(records)


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path
    port: int


def ready_server(proc: subprocess.Popen, log: Path, port: int, ready_path: str,
                 timeout: float = 120.0) -> Server:
    """The server `proc` started on `port` once `ready_path` answers 200; stopped (and the error
    raised, with its log's tail) if it dies or is not ready within `timeout` seconds."""
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}{ready_path}", proc, log, timeout=timeout)
    except BaseException:
        stop(proc)
        raise
    return Server(url, proc, log, port)


def start_serve(root: Path, name: str, *args: str, env: dict[str, str] | None = None) -> Server:
    """`mlops-pipeline serve` on a free loopback port; waits until a champion is loaded."""
    port = free_port()
    (root / name).mkdir(parents=True, exist_ok=True)
    env = {**(env or bench_env(root)), "MLOPS_SERVE_STATE_FILE": str(root / name / "server.json")}
    log = root / name / "serve.log"
    proc = start([str(BIN / "mlops-pipeline"), "serve", "--host", "127.0.0.1", "--port", str(port),
                  "--predictions-url", f"sqlite:///{root / name / 'predictions.db'}", *args], env, log)
    return ready_server(proc, log, port, "/ready")


@contextlib.contextmanager
def serving(root: Path, name: str, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """`start_serve` for the length of a `with` block: the server is stopped by its PID however
    the block ends."""
    srv = start_serve(root, name, *args, env=env)
    try:
        yield srv
    finally:
        stop(srv.proc)


def start_mlflow_serve(root: Path, name: str, model_uri: str, workers: int = 1,
                       extra_env: dict[str, str] | None = None) -> Server:
    """The baseline: `mlflow models serve` of the same registered model (it needs the venv bin on
    PATH because it runs `bash -c "exec uvicorn ..."`)."""
    port = free_port()
    (root / name).mkdir(parents=True, exist_ok=True)
    env = {**bench_env(root), "MLFLOW_TRACKING_URI": tracking_uri(root), **(extra_env or {})}
    log = root / name / "serve.log"
    proc = start([str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
                  "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)], env, log)
    return ready_server(proc, log, port, "/ping", timeout=180)


# ---------------------------------------------------------------- load generation

@dataclass
class Load:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    tool: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_WRK_LUA = """
local bodies = {%s}
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "%s", {["Content-Type"] = "application/json"}, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH {\\"requests\\": %%d, \\"errors\\": %%d, \\"seconds\\": %%f, "
    .. "\\"p50\\": %%f, \\"p95\\": %%f, \\"p99\\": %%f}\\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3))
end
"""


def load(url: str, path: str, bodies: list[str], connections: int, seconds: float, workdir: Path,
         threads: int = 2, tool: str = "auto") -> Load:
    """Closed-loop load from ANOTHER process: wrk (`apt-get install -y wrk`) with a Lua script that
    posts the bodies in turn, or bench/_loadgen.py (async httpx) when wrk is not installed."""
    workdir.mkdir(parents=True, exist_ok=True)
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "httpx"
    if tool == "wrk":
        quoted = ", ".join("[==[" + b + "]==]" for b in bodies)
        script = workdir / "post.lua"
        script.write_text(_WRK_LUA % (quoted, path))
        duration = f"{max(1, round(seconds))}s"
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", duration,
                              "--timeout", "10s", "-s", str(script), url],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
    else:
        bodies_file = workdir / "bodies.json"
        bodies_file.write_text(json.dumps(bodies))
        out = subprocess.run([sys.executable, str(BENCH_DIR / "_loadgen.py"), url + path,
                              str(bodies_file), str(connections), str(seconds)],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next((x for x in out.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"load generator gave no summary:\n{out[-2000:]}")
    d = json.loads(line[6:])
    return Load(d["requests"], d["errors"], d["seconds"], d["p50"], d["p95"], d["p99"], tool)


def measure_load(server: Server, path: str, bodies: list[str], connections: int, seconds: float,
                 workdir: Path, tool: str = "auto") -> tuple[Load, float]:
    """A warm-up (up to 3 s), then one timed run of `load`; with the CPU seconds of the server's
    process tree per wall second of that run."""
    load(server.url, path, bodies, connections, min(3.0, seconds), workdir, tool=tool)
    cpu0 = cpu_seconds(server.proc.pid)
    result = load(server.url, path, bodies, connections, seconds, workdir, tool=tool)
    return result, (cpu_seconds(server.proc.pid) - cpu0) / result.seconds


# ---------------------------------------------------------------- output

def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        if isinstance(v, bool):
            return "yes" if v else "NO"
        return str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    return "\n".join([line, sep, *body])


def goal(met: bool) -> str:
    return "met" if met else "NOT met"
