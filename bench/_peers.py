"""The serving benchmark's peers: MLServer (its scikit-learn runtime) and BentoML, serving the same
model file as ours, each tuned, without capture.

Neither belongs in the project's lock: each lives in a bench-only virtualenv this module creates
with `uv` under the user's cache dir (`~/.cache/mlops-pipeline/bench-peers/<name>`), reused while
its requirements are unchanged. Both pin the project's scikit-learn, NumPy, pandas, SciPy and
joblib so the exported pipeline unpickles as it was fitted; the repository goes on PYTHONPATH
because the pipeline holds our `DatetimeParts` transformer (importing it needs PyYAML and
pydantic, which the peers bring or get pinned here).

The model file is the registered version's pipeline (`mlflow.sklearn.load_model`) dumped with
joblib, the format MLServer's runtime loads. Each peer gets `OMP_NUM_THREADS=1`: with OpenMP left
unlimited, two worker processes on two cores fight over threads and collapse to a few req/s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from _common import REPO, Server, free_port, ready_server, start, tracking_uri

PEERS = ("mlserver", "bentoml")

#: What the exported pipeline needs to unpickle and run exactly as fitted, pinned to this env's versions.
_SHARED = ("scikit-learn", "numpy", "pandas", "scipy", "joblib", "pyyaml")
_PACKAGES = {
    # uvloop 0.23 crashes MLServer 1.7.1's parallel workers (SeldonIO/MLServer#2286).
    "mlserver": ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"),
    "bentoml": ("bentoml==1.4.40",),
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlops-pipeline" / "bench-peers"


def requirements(name: str) -> list[str]:
    return [*_PACKAGES[name], *(f"{p}=={metadata.version(p)}" for p in _SHARED)]


def peer_python(name: str) -> Path:
    """The peer's venv interpreter, created (uv venv + uv pip install) unless the cached one was
    made from the same requirements; a stamp file written last marks a finished install."""
    root = cache_dir() / name
    python = root / "bin" / "python"
    stamp = root / "bench-requirements.txt"
    want = "\n".join(requirements(name)) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("the peers' environments are made with `uv`, which is not on PATH")
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    print(f"creating the {name} environment in {root} ...", flush=True)
    subprocess.run([uv, "venv", "--clear", "-q", "--python", version, str(root)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *requirements(name)], check=True)
    stamp.write_text(want)
    return python


def export_model(root: Path, model_uri: str) -> Path:
    """The registered pipeline as a joblib file: the same fitted object ours and mlflow serve."""
    import joblib
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(root))
    model = mlflow.sklearn.load_model(model_uri)
    path = root / "peers" / "model.joblib"
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path)
    return path


def _env(python: Path, root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")}
    env.update({
        "PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(python.parent.parent),
        "PYTHONPATH": str(REPO),  # our DatetimeParts, which the pickled pipeline references
        "OMP_NUM_THREADS": "1",
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(root / "peers" / "bentoml-home"),
    })
    return env


# ---------------------------------------------------------------- MLServer

@dataclass(frozen=True)
class MLServerConfig:
    parallel_workers: int = 0  # inference in the main process; >0 adds worker processes
    max_batch_size: int = 16  # adaptive batching: up to this many requests per model call ...
    max_batch_time: float = 0.005  # ... waiting at most this many seconds to fill a batch

    @property
    def label(self) -> str:
        where = "in the main process" if not self.parallel_workers else f"{self.parallel_workers} workers"
        return (f"MLServer 1.7.1 sklearn, tuned (batch {self.max_batch_size} / "
                f"{self.max_batch_time * 1000:g} ms, {where}, OMP=1)")


MLSERVER_MODEL = "flights"
MLSERVER_PATH = f"/v2/models/{MLSERVER_MODEL}/infer"


def start_mlserver(root: Path, model_file: Path, config: MLServerConfig = MLServerConfig()) -> Server:
    """`mlserver start` on free loopback ports (HTTP, gRPC, metrics), the sklearn runtime answering
    `predict_proba` (the probabilities ours returns too)."""
    python = peer_python("mlserver")
    port = free_port()
    home = root / "peers" / "mlserver"
    (home / MLSERVER_MODEL).mkdir(parents=True, exist_ok=True)
    (home / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "parallel_workers": config.parallel_workers, "debug": False,
    }))
    (home / MLSERVER_MODEL / "model-settings.json").write_text(json.dumps({
        "name": MLSERVER_MODEL, "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": config.max_batch_size, "max_batch_time": config.max_batch_time,
        "parameters": {"uri": str(model_file), "extra": {"predict_fn": "predict_proba"}},
    }))
    log = home / "serve.log"
    proc = start([str(python.parent / "mlserver"), "start", str(home)], _env(python, root), log)
    return ready_server(proc, log, port, f"/v2/models/{MLSERVER_MODEL}/ready", timeout=180)


def _datatypes(records: list[dict]) -> dict[str, str]:
    """V2 datatype per column from the values clients send: text BYTES, else FP64 (INT64 when
    every value is an integer)."""
    types: dict[str, str] = {}
    for col in records[0]:
        values = [r[col] for r in records]
        if any(isinstance(v, str) for v in values):
            types[col] = "BYTES"
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            types[col] = "INT64"
        else:
            types[col] = "FP64"
    return types


def mlserver_bodies(records: list[dict]) -> list[str]:
    """Each record as a V2 inference request decoded by MLServer's pandas codec (a one-row frame;
    text columns decoded to str, as the model was fitted on)."""
    types = _datatypes(records)

    def one(record: dict[str, Any]) -> str:
        inputs = []
        for col, dtype in types.items():
            entry: dict[str, Any] = {"name": col, "shape": [1], "datatype": dtype, "data": [record[col]]}
            if dtype == "BYTES":
                entry["parameters"] = {"content_type": "str"}
            inputs.append(entry)
        return json.dumps({"parameters": {"content_type": "pd"}, "inputs": inputs})

    return [one(r) for r in records]


# ---------------------------------------------------------------- BentoML

@dataclass(frozen=True)
class BentoConfig:
    workers: int = 2
    max_batch_size: int = 16
    # A small latency limit makes BentoML answer 503 "overloaded" under this load; its default
    # (60 s) only caps the wait.
    max_latency_ms: int = 60_000

    @property
    def label(self) -> str:
        return (f"BentoML 1.4.40, tuned ({self.workers} workers, batch {self.max_batch_size}, "
                f"OMP=1)")


_BENTO_SERVICE = '''\
"""Benchmark service: the exported pipeline, single records batched adaptively."""
import os

import bentoml
import joblib
import pandas as pd


@bentoml.service(workers={workers}, traffic={{"timeout": 60}}, logging={{"access": {{"enabled": False}}}})
class Flights:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL_FILE"])

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size={max_batch_size},
                 max_latency_ms={max_latency_ms})
    def predict(self, records: list[dict]) -> list[list[float]]:
        return self.model.predict_proba(pd.DataFrame.from_records(records)).tolist()
'''

BENTO_PATH = "/predict"


def start_bentoml(root: Path, model_file: Path, config: BentoConfig = BentoConfig()) -> Server:
    """`bentoml serve` of a generated service on a free loopback port; the body is ours
    (`{"records": [...]}`), the answer each record's class probabilities."""
    python = peer_python("bentoml")
    port = free_port()
    home = root / "peers" / "bentoml"
    home.mkdir(parents=True, exist_ok=True)
    (home / "service.py").write_text(_BENTO_SERVICE.format(
        workers=config.workers, max_batch_size=config.max_batch_size, max_latency_ms=config.max_latency_ms))
    env = {**_env(python, root), "BENCH_MODEL_FILE": str(model_file)}
    env["PYTHONPATH"] = f"{home}{os.pathsep}{env['PYTHONPATH']}"
    log = home / "serve.log"
    proc = subprocess.Popen([str(python.parent / "bentoml"), "serve", "service:Flights",
                             "--host", "127.0.0.1", "--port", str(port)],
                            env=env, cwd=home, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    return ready_server(proc, log, port, "/readyz", timeout=180)
