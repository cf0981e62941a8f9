"""The production topology of docs/production.md on one machine, every part its own process group,
each started with the command the Dockerfiles and the docs give:

PostgreSQL (databases dagster, mlflow, predictions), the S3 store (SeaweedFS), the MLflow tracking
server (Postgres backend, S3 artifacts), `dagster code-server start` over gRPC, `dagster-daemon`
and `dagster-webserver` on Postgres storage (deploy/dagster.yaml: the queued run coordinator, the
default run launcher, so every run is its own process), N `mlops-pipeline serve` replicas behind
HAProxy (deploy/haproxy/haproxy.cfg, checked on /ready) and Prometheus with the shipped scrape
config and rules. No Dagster import: Dagster runs as the processes a deployment runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline.topology.servers import (
    LOOPBACK,
    VENV_BIN,
    MissingServer,
    Servers,
    free_port,
    production_env,
    start_servers,
    wait_for,
)

#: Where the S3 store keeps the pipeline's data (landing, snapshots, reports, Dagster I/O).
PREFIX = "pipeline"
LOCATION = "mlops_pipeline"


@dataclass
class Topology:
    """What `start` brought up: the servers, the other processes by name, their URLs, and the
    environment a client (the CLI, a test) needs to talk to it (`production.env` in `root`)."""

    root: Path
    servers: Servers
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    #: How each process was started (command, environment, folder): what a restart runs again.
    commands: dict[str, tuple[list[str], dict[str, str], Path]] = field(default_factory=dict)

    def all_procs(self) -> list[subprocess.Popen]:
        own = [self.servers.postgres.proc, self.servers.s3.proc, self.servers.mlflow.proc]
        return [p for p in [*own, *self.procs.values()] if p is not None]

    def stop(self) -> None:
        """Everything, in the reverse order of its start; returns when every group is gone."""
        import threading

        from mlops_pipeline.processes import stop_group

        stop_group(*reversed(list(self.procs.values())), timeout=20)
        # The three servers shut down on their own clocks (Postgres checkpoints): side by side.
        stops = [threading.Thread(target=server.stop) for server in
                 (self.servers.mlflow, self.servers.s3, self.servers.postgres)]
        for thread in stops:
            thread.start()
        for thread in stops:
            thread.join()

    def describe(self) -> dict[str, Any]:
        servers = {"postgres": self.servers.postgres.proc, "s3": self.servers.s3.proc,
                   "mlflow": self.servers.mlflow.proc}
        pids = {name: p.pid for name, p in {**servers, **self.procs}.items() if p is not None}
        return {"root": str(self.root), "urls": self.urls, "pids": pids}


def _binary(name: str) -> str:
    path = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        hint = {"haproxy": "apt-get install haproxy", "prometheus": "apt-get install prometheus"}
        raise MissingServer(f"`{name}` not found ({hint.get(name, 'uv sync')})")
    return path


def _spawn(top: Topology, name: str, cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
    from mlops_pipeline.processes import default_signals

    log = top.root / "logs" / f"{name}.log"
    log.parent.mkdir(exist_ok=True)
    top.commands[name] = (cmd, env, cwd or top.root)
    top.procs[name] = subprocess.Popen(cmd, env=env, cwd=cwd or top.root, stdout=log.open("ab"),
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=default_signals)


def _wait_http(top: Topology, name: str, url: str, timeout: float = 180.0) -> None:
    import urllib.request

    log = top.root / "logs" / f"{name}.log"
    wait_for(name, lambda: urllib.request.urlopen(url, timeout=3).read(), timeout, top.procs[name], log)


def haproxy_config(replicas: int) -> str:
    """The shipped deploy/haproxy/haproxy.cfg with one `server` line per replica (it ships two)."""
    text = (PROJECT_ROOT / "deploy" / "haproxy" / "haproxy.cfg").read_text()
    lines = [f'    server replica{i} "${{MLOPS_REPLICA_{i}}}" check' for i in range(1, replicas + 1)]
    text = re.sub(r"(?m)^    server replica\d+ .*\n", "", text)
    return re.sub(r"(?m)^(    default-server .*\n)", lambda m: m.group(1) + "\n".join(lines) + "\n", text)


def prometheus_config(targets: list[str], own: str, interval: str | None = None) -> str:
    """The shipped deploy/prometheus/prometheus.yml with the replicas as the serving targets
    (and `interval` as its scrape and evaluation interval, when given)."""
    import yaml

    prom = PROJECT_ROOT / "deploy" / "prometheus"
    config = yaml.safe_load((prom / "prometheus.yml").read_text())
    if interval:
        config["global"] |= {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(prom / f) for f in config["rule_files"]]
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            static["targets"] = targets if job["job_name"] == "mlops-serving" else [own]
    return yaml.safe_dump(config, sort_keys=False)


def start(root: Path, replicas: int = 2, land_sample: float = 1.0, dataset_config: str | None = None,
          ports: dict[str, int] | None = None, say: Any = print) -> Topology:
    """Bring the whole topology up under `root` (a directory the unprivileged postgres user can
    enter) and return it once every part answers; on any failure what started is stopped."""
    ports = {**(ports or {})}
    say("starting PostgreSQL, the S3 store (SeaweedFS) and the MLflow server")
    servers = start_servers(root)
    home = root / "dagster_home"
    env = {**os.environ, **production_env(servers, PREFIX, home),
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for stale in ("MLFLOW_REGISTRY_URI", "MLOPS_DATA_DIR"):
        env.pop(stale, None)
    if dataset_config:
        env["MLOPS_DATASET_CONFIG"] = str(Path(dataset_config).resolve())
    top = Topology(root, servers, env)
    try:
        _start_rest(top, replicas, land_sample, ports, say)
    except BaseException:
        top.stop()
        raise
    return top


def _start_rest(top: Topology, replicas: int, land_sample: float, ports: dict[str, int], say: Any) -> None:
    env, root, home = top.env, top.root, Path(top.env["DAGSTER_HOME"])
    top.urls |= {"mlflow": top.servers.mlflow.url, "s3": top.servers.s3.endpoint,
                 "postgres": f"postgresql://{LOOPBACK}:{top.servers.postgres.port}"}
    mlops = str(VENV_BIN / "mlops-pipeline")
    say("landing January-March 2013 of the flights on S3 (when nothing is landed yet)")
    land = subprocess.run([mlops, "land", "--months", "1", "2", "3", "--sample", str(land_sample)],
                          env=env, cwd=root, capture_output=True, text=True, timeout=600)
    if land.returncode != 0:
        raise RuntimeError(f"landing failed: {land.stdout[-1500:]}{land.stderr[-1500:]}")
    grpc = ports.get("code_server") or free_port()
    (home / "workspace.yaml").write_text(json.dumps({"load_from": [{"grpc_server": {
        "host": LOOPBACK, "port": grpc, "location_name": LOCATION}}]}))
    say(f"starting the code server (gRPC {grpc}), the Dagster daemon and the webserver")
    _spawn(top, "code_server", [_binary("dagster"), "code-server", "start", "-h", LOOPBACK, "-p", str(grpc),
                                "-m", "mlops_pipeline.defs.definitions"], env)
    health = [_binary("dagster"), "api", "grpc-health-check", "-p", str(grpc), "-h", LOOPBACK]
    wait_for("code server", lambda: subprocess.run(health, env=env, capture_output=True, timeout=30,
                                                   check=True), 300, top.procs["code_server"],
             root / "logs" / "code_server.log")
    _spawn(top, "daemon", [_binary("dagster-daemon"), "run", "-w", "workspace.yaml"], env, cwd=home)
    web = ports.get("dagster") or free_port()
    _spawn(top, "webserver", [_binary("dagster-webserver"), "-h", LOOPBACK, "-p", str(web),
                              "-w", "workspace.yaml"], env, cwd=home)
    top.urls["dagster"] = f"http://{LOOPBACK}:{web}"
    addresses = []
    for i in range(1, replicas + 1):
        port = free_port()
        replica_env = {**env, "MLOPS_SERVE_STATE_FILE": str(root / f"replica{i}.json")}
        _spawn(top, f"replica{i}", [mlops, "serve", "--host", LOOPBACK, "--port", str(port)], replica_env)
        addresses.append(f"{LOOPBACK}:{port}")
        top.urls[f"replica{i}"] = f"http://{LOOPBACK}:{port}"
    lb, stats = ports.get("serving") or free_port(), free_port()
    (root / "haproxy.cfg").write_text(haproxy_config(replicas))
    lb_env = {**env, "MLOPS_LB_BIND": f"{LOOPBACK}:{lb}", "MLOPS_LB_STATS": f"{LOOPBACK}:{stats}",
              **{f"MLOPS_REPLICA_{i}": a for i, a in enumerate(addresses, 1)}}
    _spawn(top, "haproxy", [_binary("haproxy"), "-f", str(root / "haproxy.cfg")], lb_env)
    top.urls |= {"serving": f"http://{LOOPBACK}:{lb}", "haproxy_stats": f"http://{LOOPBACK}:{stats}/stats"}
    prom = ports.get("prometheus") or free_port()
    (root / "prometheus.yml").write_text(prometheus_config(addresses, f"{LOOPBACK}:{prom}"))
    _spawn(top, "prometheus", [_binary("prometheus"), f"--config.file={root / 'prometheus.yml'}",
                               f"--storage.tsdb.path={root / 'prometheus'}",
                               f"--web.listen-address={LOOPBACK}:{prom}"], env)
    top.urls["prometheus"] = f"http://{LOOPBACK}:{prom}"
    _wait_http(top, "webserver", f"{top.urls['dagster']}/server_info")
    _wait_http(top, "haproxy", top.urls["haproxy_stats"])
    _wait_http(top, "prometheus", f"{top.urls['prometheus']}/-/ready")
    for i in range(1, replicas + 1):  # up (not ready: the first champion comes from the daemon's run)
        _wait_http(top, f"replica{i}", f"{top.urls[f'replica{i}']}/health")
    env_file = root / "production.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in production_env_only(env).items()))
    env_file.chmod(0o600)
    (root / "topology.json").write_text(json.dumps(top.describe(), indent=2))


def production_env_only(env: dict[str, str]) -> dict[str, str]:
    """The variables `production_env` sets (and the dataset config), without the rest of `os.environ`."""
    keys = [k for k in env if k.startswith(("MLOPS_", "MLFLOW_", "DAGSTER_", "AWS_"))]
    return {k: env[k] for k in sorted(keys)}


def supervise(top: Topology, say: Any = print, max_restarts: int = 5, poll_s: float = 1.0,
              on_restart: Any = None) -> None:
    """Keep the topology running as a process supervisor would (systemd `Restart=always`, a
    Kubernetes restartPolicy): a process or server that exits is started again with the command
    it was started with, on the same ports and data, and `topology.json` records its new pid.
    `on_restart()` runs after each restart. Returns when one has exited `max_restarts` times
    (then the caller stops everything)."""
    from collections import Counter

    from mlops_pipeline.processes import stop_group

    restarts: Counter[str] = Counter()
    servers = {"postgres": top.servers.postgres, "s3": top.servers.s3, "mlflow": top.servers.mlflow}
    while True:
        exited = [(n, p) for n, p in top.procs.items() if p.poll() is not None]
        exited += [(n, srv.proc) for n, srv in servers.items()
                   if srv.proc is not None and srv.proc.poll() is not None]
        for name, proc in exited:
            if restarts[name] >= max_restarts:
                say(f"{name} exited {max_restarts + 1} times (last: {proc.returncode}); stopping everything")
                return
            restarts[name] += 1
            say(f"{name} (pid {proc.pid}) exited with {proc.returncode}; restarting it")
            stop_group(proc, timeout=10)  # what is left of its group (a server's own children)
            if name in servers:
                servers[name].start()
            else:
                _spawn(top, name, *top.commands[name])
            (top.root / "topology.json").write_text(json.dumps(top.describe(), indent=2))
            if on_restart is not None:
                on_restart()
        time.sleep(poll_s)
