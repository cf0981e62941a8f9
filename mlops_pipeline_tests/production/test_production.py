"""The loop in the production profile, on real servers: Postgres, SeaweedFS (S3) and MLflow server.

One loop run per module (a 12% sample of three months, landed on S3) is shared by the tests, which
run in file order: what it stored, a run with the MLflow server down, a broken and an unreachable
S3 store, then a restart of every server, after which nothing may be missing.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlops_pipeline.data.landing import land_months
from mlops_pipeline.data.snapshots import content_id, read_landing
from mlops_pipeline.data.storage import Storage, copy_tree_to_storage
from mlops_pipeline_tests.conftest import SAMPLE, check_results, materialized
from mlops_pipeline_tests.production.conftest import BUCKET, LOOPBACK, Servers, production_env

pytestmark = pytest.mark.slow

MODEL = "flights_delay"
LOOP = {"dataset_snapshot", "training_features", "trained_model", "model_version", "champion_model",
        "drift_report"}


def run_job(assets: list[str] | None = None) -> dg.ExecuteInProcessResult:
    """The `mlops_loop` job in-process, on the instance `$DAGSTER_HOME/dagster.yaml` describes."""
    from mlops_pipeline.defs.definitions import build_definitions

    job = build_definitions().resolve_job_def("mlops_loop")
    if assets:
        job = job.get_subset(asset_selection={dg.AssetKey(a) for a in assets})
    with dg.DagsterInstance.get() as instance:
        return job.execute_in_process(instance=instance, raise_on_error=False)


def step_errors(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        str(e.step_failure_data.error.to_string())
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE" and e.step_failure_data.error is not None
    )


def land_on_s3(storage: Storage, flights: pd.DataFrame, local: Path, months=(1, 2, 3)) -> None:
    land_months(local, months, SAMPLE, frame=flights)
    copy_tree_to_storage(storage, local, "landing/flights")


@dataclass
class Loop:
    servers: Servers
    env: dict[str, str]
    data_dir: Path
    result: dg.ExecuteInProcessResult

    @property
    def snapshot_id(self) -> str:
        return self.result.output_for_node("dataset_snapshot").id

    @property
    def prefix(self) -> str:
        return self.env["MLOPS_STORAGE_ROOT"].split(f"s3://{BUCKET}/", 1)[1]


def mlflow_client(url: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=url, registry_uri=url)


@pytest.fixture(scope="module")
def loop(servers: Servers, flights: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("production")
    with pytest.MonkeyPatch.context() as mp:
        env = production_env(servers, "loop", tmp / "dagster_home")
        for k, v in env.items():
            mp.setenv(k, v)
        data_dir = tmp / "local_data"  # must stay empty: production writes nothing locally
        data_dir.mkdir()
        mp.setenv("MLOPS_DATA_DIR", str(data_dir))
        mp.delenv("MLOPS_DATASET_CONFIG", raising=False)
        import mlflow

        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(env["MLFLOW_TRACKING_URI"])
        # Two runs, as in life: v1 becomes champion on Jan-Feb; March lands and v2 is trained, its
        # new rows compared with v1's training data (drift report on S3) and promoted through the gate.
        land_on_s3(Storage(), flights, tmp / "landed", months=(1, 2))
        first = run_job()
        assert first.success, step_errors(first)
        land_on_s3(Storage(), flights, tmp / "landed", months=(3,))
        result = run_job()
        yield Loop(servers, env, data_dir, result)


def test_whole_loop_stores_everything_on_the_servers(loop: Loop):
    import mlflow

    result, s3 = loop.result, loop.servers.s3.client()
    assert result.success, step_errors(result) or {
        n: c.description for n, c in check_results(result).items() if not c.passed
    }
    assert materialized(result) == LOOP
    assert all(c.passed for n, c in check_results(result).items() if not n.endswith("drift"))

    # Snapshot: an S3 object whose key is its content id, and whose content hashes to it.
    key = f"{loop.prefix}/snapshots/{loop.snapshot_id}.parquet"
    assert result.output_for_node("dataset_snapshot").path == f"s3://{BUCKET}/{key}"
    stored = Storage(root=loop.env["MLOPS_STORAGE_ROOT"],
                     endpoint_url=loop.servers.s3.endpoint).read_snapshot(loop.snapshot_id)
    assert content_id(stored) == loop.snapshot_id
    assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 10_000
    # Values passed between assets went through the S3 I/O manager, the report to S3 too.
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=loop.prefix)["Contents"]}
    assert f"{loop.prefix}/dagster-io/training_features" in keys
    report = result.asset_materializations_for_node("drift_report")[0].metadata["report_path"].value
    assert report.startswith(f"s3://{BUCKET}/{loop.prefix}/reports/") and report.endswith(".html")
    assert report.split(f"s3://{BUCKET}/", 1)[1] in keys
    assert not [p for p in loop.data_dir.rglob("*") if p.is_file()], "production wrote local files"

    # Model: registered on the tracking server, its artifacts in the S3 bucket behind it.
    client = mlflow_client(loop.servers.mlflow.url)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.version == "2" and champion.tags["snapshot_id"] == loop.snapshot_id
    assert champion.tags["gate.status"] == "passed"
    artifact_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="mlflow/")["Contents"]]
    owner = champion.source.rstrip("/").rsplit("/", 1)[-1]  # MLflow 3: models:/m-<logged model id>
    assert any(owner in k and k.endswith("MLmodel") for k in artifact_keys), artifact_keys[:20]
    model = mlflow.sklearn.load_model(f"models:/{MODEL}@champion")
    assert hasattr(model, "predict_proba")

    # Dagster: the run and its events are rows in the Postgres database.
    with loop.servers.postgres.connect("dagster") as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cur.fetchone() == ("SUCCESS",)
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND asset_key IS NOT NULL",
                    (result.run_id,))
        assert cur.fetchone()[0] >= len(LOOP)


def test_two_serving_replicas_load_from_the_server_and_log_to_one_postgres_store(
    loop: Loop, flights: pd.DataFrame, tmp_path: Path
):
    """Two `mlops-pipeline serve` processes in the production profile: the champion comes from the
    MLflow server (artifacts on S3), every answered record lands in the shared Postgres store, and
    a Postgres restart loses none of them."""
    import os

    import httpx

    from mlops_pipeline.cli.simulate import wait_ready
    from mlops_pipeline.defs.simulation import replay, request_records
    from mlops_pipeline.monitoring.predictions import PredictionStore
    from mlops_pipeline.processes import stop_group
    from mlops_pipeline.spec import load_spec
    from mlops_pipeline_tests.production.conftest import free_port

    env = {**os.environ, **loop.env, "MLOPS_DATA_DIR": str(tmp_path / "replica-data"),
           "OMP_NUM_THREADS": "1"}
    env.pop("MLOPS_DATASET_CONFIG", None)
    cli = str(Path(sys.executable).parent / "mlops-pipeline")
    ports = [free_port(), free_port()]
    while ports[1] == ports[0]:
        ports[1] = free_port()
    logs = [tmp_path / f"replica-{i}.log" for i in range(2)]
    replicas = []
    for port, log in zip(ports, logs, strict=True):
        with open(log, "w") as out:
            replicas.append(subprocess.Popen(
                [cli, "serve", "--port", str(port)],
                env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT,
            ))
    urls = [f"http://{LOOPBACK}:{p}" for p in ports]
    store = PredictionStore(loop.env["MLOPS_PREDICTIONS_URL"])
    try:
        for url, proc, log in zip(urls, replicas, logs, strict=True):
            wait_ready(url, process=proc, log=log)
            health = httpx.get(f"{url}/health", timeout=5).json()
            assert health["status"] == "ok", health
            assert str(health["champion"]["version"]) == "2"

        spec = load_spec()
        before = store.count()
        rows = flights[flights["month"] == 4].sample(400, random_state=4)
        records = request_records(rows, spec)
        answered: list[list[str | None]] = [[], []]
        threads = [
            threading.Thread(target=lambda i=i: answered[i].extend(
                replay(urls[i], records[i * 200:(i + 1) * 200], batch=5, concurrency=4)))
            for i in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        ids = [rid for part in answered for rid in part]
        assert len(ids) == 400 and all(ids)
        assert store.count() - before == 400  # every acknowledged prediction is in the shared store
        logged = store.read_window()
        assert set(ids) <= set(logged["request_id"])
        assert set(logged[logged["request_id"].isin(ids)]["model_version"].astype(str)) == {"2"}

        loop.servers.postgres.stop()
        loop.servers.postgres.start()
        store.close()
        store = PredictionStore(loop.env["MLOPS_PREDICTIONS_URL"])
        assert set(ids) <= set(store.read_window()["request_id"])  # durable across a restart
    finally:
        store.close()
        stop_group(*replicas, timeout=20)


def test_mlflow_server_down_fails_the_run_clearly_and_registers_nothing(loop: Loop, monkeypatch):
    for k, v in loop.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MLOPS_DATA_DIR", str(loop.data_dir))
    server = loop.servers.mlflow
    server.stop()
    try:
        result = run_job()
    finally:
        server.start()

    assert not result.success
    errors = step_errors(result)
    assert f"{LOOPBACK}:{server.port}" in errors, errors[-2000:]  # names the tracking server
    assert "trained_model" not in materialized(result)
    assert "model_version" not in materialized(result)
    client = mlflow_client(server.url)
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert sorted(v.version for v in versions) == ["1", "2"]  # no half-registered version
    assert client.get_model_version_by_alias(MODEL, "champion").version == "2"


class CuttingProxy:
    """A TCP proxy to the S3 port that drops a connection once the client has sent `cut_after`
    bytes on it: an upload that dies half-way, against the real server."""

    def __init__(self, target: int, cut_after: int):
        self.target, self.cut_after = target, cut_after
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((LOOPBACK, self.target))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                sent += len(data)
                if count and sent > self.cut_after:
                    self.cuts += 1
                    dst.sendall(data[: max(0, len(data) - (sent - self.cut_after))])
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()


def test_s3_failing_mid_upload_or_unreachable_fails_clearly_with_no_partial_snapshot(
    loop: Loop, flights: pd.DataFrame, tmp_path: Path, monkeypatch
):
    for k, v in loop.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MLOPS_DATA_DIR", str(loop.data_dir))
    root = f"s3://{BUCKET}/fault"
    monkeypatch.setenv("MLOPS_STORAGE_ROOT", root)
    direct = Storage(root=root, endpoint_url=loop.servers.s3.endpoint)
    land_on_s3(direct, flights, tmp_path / "landed", months=(1, 2))
    expected_id = content_id(read_landing(direct.landing_glob(_spec()), "parquet", storage=direct))
    snapshot_key = f"fault/snapshots/{expected_id}.parquet"

    cut_after = 64 * 1024  # landing reads send a few KB; the snapshot upload is far larger
    proxy = CuttingProxy(loop.servers.s3.ports["s3"], cut_after)
    monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", f"http://{LOOPBACK}:{proxy.port}")
    try:
        broken = run_job(["dataset_snapshot"])
    finally:
        proxy.close()
    assert not broken.success
    errors = step_errors(broken)
    assert f"S3 store http://{LOOPBACK}:{proxy.port}" in errors and "PUT" in errors, errors[-2000:]
    assert proxy.cuts >= 1
    s3 = loop.servers.s3.client()
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="fault/snapshots/")
    assert listed.get("KeyCount", 0) == 0, f"partial snapshot left: {listed.get('Contents')}"
    assert not direct.has_snapshot(expected_id)

    with socket.socket() as s:  # a port nobody listens on: the store is simply down
        s.bind((LOOPBACK, 0))
        dead = s.getsockname()[1]
    monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", f"http://{LOOPBACK}:{dead}")
    down = run_job(["dataset_snapshot"])
    assert not down.success
    assert f"S3 store http://{LOOPBACK}:{dead}" in step_errors(down)
    assert "unreachable" in step_errors(down)

    # With the store back, the same run writes the complete snapshot under that very id.
    monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", loop.servers.s3.endpoint)
    healed = run_job(["dataset_snapshot"])
    assert healed.success, step_errors(healed)
    assert healed.output_for_node("dataset_snapshot").id == expected_id
    assert content_id(direct.read_snapshot(expected_id)) == expected_id
    assert s3.head_object(Bucket=BUCKET, Key=snapshot_key)["ContentLength"] > cut_after


def _spec():
    from mlops_pipeline.spec import load_spec

    return load_spec()


def test_restarting_every_server_loses_nothing(loop: Loop, monkeypatch):
    import mlflow

    for k, v in loop.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MLOPS_DATA_DIR", str(loop.data_dir))
    client = mlflow_client(loop.servers.mlflow.url)
    versions_before = sorted(v.version for v in client.search_model_versions(f"name='{MODEL}'"))
    aliases_before = client.get_registered_model(MODEL).aliases
    with dg.DagsterInstance.get() as instance:
        runs_before = {r.dagster_run.run_id: r.dagster_run.status for r in instance.get_run_records()}
    assert runs_before[loop.result.run_id] == dg.DagsterRunStatus.SUCCESS and len(runs_before) >= 2

    servers = loop.servers
    pids = [servers.postgres.proc.pid, servers.s3.proc.pid, servers.mlflow.proc.pid]
    servers.stop_all()
    assert all(p.poll() is not None for p in (servers.postgres.proc, servers.s3.proc, servers.mlflow.proc))
    servers.start_all()
    assert not {servers.postgres.proc.pid, servers.s3.proc.pid, servers.mlflow.proc.pid} & set(pids)

    with dg.DagsterInstance.get() as instance:
        runs_after = {r.dagster_run.run_id: r.dagster_run.status for r in instance.get_run_records()}
        assert runs_after == runs_before
        event = instance.get_latest_materialization_event(dg.AssetKey("dataset_snapshot"))
        assert event is not None
    client = mlflow_client(servers.mlflow.url)
    assert sorted(v.version for v in client.search_model_versions(f"name='{MODEL}'")) == versions_before
    assert client.get_registered_model(MODEL).aliases == aliases_before
    assert client.get_model_version_by_alias(MODEL, "champion").tags["snapshot_id"] == loop.snapshot_id
    model = mlflow.sklearn.load_model(f"models:/{MODEL}@champion")  # artifacts: server -> S3
    assert hasattr(model, "predict_proba")
    storage = Storage()
    assert content_id(storage.read_snapshot(loop.snapshot_id)) == loop.snapshot_id

    # And the restarted stack keeps working: the same landing maps to the same, untouched snapshot.
    again = run_job(["dataset_snapshot"])
    assert again.success, step_errors(again)
    meta = again.asset_materializations_for_node("dataset_snapshot")[0].metadata
    assert meta["snapshot_id"].value == loop.snapshot_id and meta["newly_written"].value is False


WRITER = """
import sys
from mlops_pipeline.monitoring.predictions import PredictionBatch, PredictionStore
url, tag, batches, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store = PredictionStore(url)
for b in range(batches):
    store.write([  # a group commit of `size` single-record requests
        PredictionBatch.from_records([{"origin": "JFK", "tag": tag, "i": i}], [0.0], [0.25],
                                     model_name="flights_delay", latency_ms=1.0)
        for i in range(size)
    ])
store.close()
"""


def test_two_writers_share_one_postgres_prediction_store_without_losing_rows(servers: Servers):
    """Two processes (as two serving replicas would) write to one Postgres store at the same time."""
    from mlops_pipeline.monitoring.predictions import PredictionStore

    url = servers.postgres.url("predictions", "postgresql+psycopg2")
    store = PredictionStore(url)
    before = store.count()
    batches, size = 40, 25
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, tag, str(batches), str(size)],
                         stderr=subprocess.PIPE)
        for tag in ("replica-a", "replica-b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    assert store.count() - before == 2 * batches * size
    frame = store.read_window(expand_features=True)
    mine = frame[frame["tag"].isin(["replica-a", "replica-b"])]
    assert mine["request_id"].nunique() == 2 * batches * size
    assert mine.groupby("tag")["i"].count().to_dict() == {"replica-a": batches * size,
                                                          "replica-b": batches * size}
    store.close()
