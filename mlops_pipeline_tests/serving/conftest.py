"""Real processes for the serving tests: one MLflow tracking server, two registered versions, and
serving processes started with `mlops-pipeline serve`, all on free 127.0.0.1 ports.

Built once per session (the MLflow server takes ~7 s to start and each registration runs the real
pipeline), so every serving test shares: v1 = champion trained on Jan-Feb, v2 = challenger trained
on Jan-Mar (gated, gate.status=passed). Processes are stopped by PID (their own process group).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import httpx
import pandas as pd
import pytest

from mlops_pipeline.data.landing import land_months
from mlops_pipeline.processes import stop_group

SAMPLE = 0.12
MODEL = "flights_delay"
TOKEN = "test-token-0123456789abcdefghijklmnop"  # 32+ characters, as the server requires
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    out = log.open("wb")
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    stop_group(proc, timeout=timeout)


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} process exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


@dataclass
class Stack:
    root: Path
    data_dir: Path
    tracking_uri: str
    env: dict[str, str]
    holdout: pd.DataFrame  # v2's holdout rows (raw contract columns), for realistic requests
    features: list[str] = field(default_factory=list)

    def predictions_url(self, name: str) -> str:
        return f"sqlite:///{self.root / name / 'predictions.db'}"


def _run_assets(assets: list[str], run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    from mlops_pipeline.defs.definitions import build_definitions

    job = build_definitions().resolve_job_def("mlops_loop")
    job = job.get_subset(asset_selection={dg.AssetKey(a) for a in assets})
    with dg.DagsterInstance.ephemeral() as instance:
        return job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, flights: pd.DataFrame) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("serving")
    data = root / "data"
    data.mkdir()
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MLOPS_DATA_DIR": str(data),
        "MLFLOW_TRACKING_URI": uri,
        # MLflow exports the process-wide registry URI to the environment: a loop run earlier in
        # the session would otherwise point every child at that run's registry.
        "MLFLOW_REGISTRY_URI": uri,
        "DAGSTER_HOME": str(root / "dagster_home"),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("MLOPS_DATASET_CONFIG", None)
    log = root / "mlflow.log"
    mlflow_proc = start(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        env, log,
    )
    try:
        wait_http(f"{uri}/health", mlflow_proc, log, timeout=60)
        with pytest.MonkeyPatch.context() as mp:
            for key in ("MLOPS_DATA_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DAGSTER_HOME"):
                mp.setenv(key, env[key])
            mp.delenv("MLOPS_DATASET_CONFIG", raising=False)
            landing = data / "landing" / "flights"
            land_months(landing, (1, 2), SAMPLE, frame=flights)
            first = _run_assets(["dataset_snapshot", "training_features", "trained_model",
                                 "model_version", "champion_model"])
            assert first.success, "registering v1 through the pipeline failed"
            land_months(landing, (3,), SAMPLE, frame=flights)
            second = _run_assets(["dataset_snapshot", "training_features", "trained_model",
                                  "model_version"])
            assert second.success, "registering v2 through the pipeline failed"
            from mlops_pipeline.data.preparation import SPLIT_COLUMN
            from mlops_pipeline.spec import load_spec

            spec = load_spec()
            # build_definitions took the tracking server from MLFLOW_TRACKING_URI: both versions
            # live there, and no embedded SQLite registry was created under the data dir.
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
            assert client.get_model_version_by_alias(MODEL, "challenger").version == "2"
            assert not (data / "mlflow" / "mlflow.db").exists()
            frame = pd.read_parquet(second.output_for_node("training_features").location)
            holdout = frame[frame[SPLIT_COLUMN] == "holdout"][spec.features.columns]
            holdout = holdout.reset_index(drop=True)
        yield Stack(root, data, uri, env, holdout, list(spec.features.columns))
    finally:
        stop(mlflow_proc)


@pytest.fixture(autouse=True)
def _stack_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point in-process code (MLflowResource, the CLI) at the session's server and data dir."""
    if "stack" not in request.fixturenames:
        return
    s: Stack = request.getfixturevalue("stack")
    for key in ("MLOPS_DATA_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DAGSTER_HOME"):
        monkeypatch.setenv(key, s.env[key])
    monkeypatch.delenv("MLOPS_DATASET_CONFIG", raising=False)
    monkeypatch.delenv("MLOPS_SERVE_TOKEN", raising=False)
    monkeypatch.delenv("MLOPS_SERVE_URL", raising=False)


@dataclass
class ServeProc:
    url: str
    proc: subprocess.Popen
    log: Path
    predictions_url: str
    port: int


def start_server(s: Stack, name: str, *args: str, tracking_uri: str | None = None,
                 wait_ready: bool = True) -> ServeProc:
    port = free_port()
    (s.root / name).mkdir(exist_ok=True)
    env = {**s.env, "MLOPS_SERVE_TOKEN": TOKEN,
           "MLOPS_SERVE_STATE_FILE": str(s.root / name / "server.json")}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = env["MLFLOW_REGISTRY_URI"] = tracking_uri
    log = s.root / name / "serve.log"
    url = f"http://127.0.0.1:{port}"
    proc = start([str(BIN / "mlops-pipeline"), "serve", "--port", str(port),
                  "--predictions-url", s.predictions_url(name), *args], env, log)
    try:
        wait_http(f"{url}/ready" if wait_ready else f"{url}/health", proc, log)
    except BaseException:
        stop(proc)
        raise
    return ServeProc(url, proc, log, s.predictions_url(name), port)


@pytest.fixture(scope="session")
def full_server(stack: Stack) -> Iterator[ServeProc]:
    """Champion + challenger in shadow AND canary (30%), unseen categories rejected."""
    srv = start_server(stack, "full", "--shadow", "--canary-share", "0.3", "--poll-seconds", "1",
                       "--unseen-categories", "reject")
    deadline = time.time() + 60
    while httpx.get(f"{srv.url}/health").json()["challenger"] is None:  # loaded right after champion
        assert time.time() < deadline, srv.log.read_text()[-3000:]
        time.sleep(0.2)
    yield srv
    stop(srv.proc)


def records(s: Stack, n: int, offset: int = 0) -> list[dict]:
    """Holdout rows as a client sends them: JSON types, ISO timestamps, null for missing."""
    import json

    return json.loads(s.holdout.iloc[offset:offset + n].to_json(orient="records", date_format="iso"))


class Forwarder:
    """A loopback TCP forwarder in front of the MLflow server: closing it is a registry outage
    for whoever talks through it, while the real server keeps running for everyone else."""

    def __init__(self, upstream_port: int):
        import threading

        self.upstream = upstream_port
        self.port = free_port()
        self._threads = threading
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._threads.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                self._threads.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
