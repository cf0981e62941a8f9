"""`mlops-pipeline explain` in the production profile, unchanged: the loop on Postgres, SeaweedFS (S3)
and an MLflow server (two runs: v1 on Jan-Feb, then March lands and v2 is gated against v1, its new
rows' drift report logged), a `serve` process answering from the registry into the Postgres store,
and the CLI as a subprocess with only the production environment. The model has its own name here,
so the session's shared MLflow server and Postgres store keep test_production's versions apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlops_pipeline.data.snapshots import content_id
from mlops_pipeline.data.storage import Storage
from mlops_pipeline_tests.production.conftest import LOOPBACK, Servers, free_port, production_env
from mlops_pipeline_tests.production.test_production import land_on_s3, run_job, step_errors

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).parent / "mlops-pipeline")
MODEL = "flights_delay_explained"


@pytest.fixture(scope="module")
def env(servers: Servers, flights: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    import yaml

    from mlops_pipeline.spec import PROJECT_ROOT

    tmp = tmp_path_factory.mktemp("explain-production")
    spec = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    config = tmp / "flights_explained.yaml"
    config.write_text(yaml.safe_dump({**spec, "name": MODEL}, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        env = {**production_env(servers, "explain", tmp / "dagster_home"),
               "MLOPS_DATASET_CONFIG": str(config)}
        for k, v in env.items():
            mp.setenv(k, v)
        mp.setenv("MLOPS_DATA_DIR", str(tmp / "local_data"))
        import mlflow

        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(env["MLFLOW_TRACKING_URI"])
        land_on_s3(Storage(), flights, tmp / "landed", months=(1, 2))
        assert (first := run_job()).success, step_errors(first)
        land_on_s3(Storage(), flights, tmp / "landed", months=(3,))
        assert (second := run_job()).success, step_errors(second)
        yield {**os.environ, **env, "MLOPS_DATA_DIR": str(tmp / "local_data"), "OMP_NUM_THREADS": "1"}


def _explain(env: dict[str, str], *args: str) -> dict:
    out = subprocess.run([CLI, "explain", *args, "--json"], env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_explain_on_postgres_s3_and_the_mlflow_server(env, flights: pd.DataFrame, tmp_path: Path):
    import httpx

    from mlops_pipeline.cli.simulate import wait_ready
    from mlops_pipeline.defs.simulation import request_records
    from mlops_pipeline.processes import stop_group
    from mlops_pipeline.spec import load_spec

    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([CLI, "serve", "--port", str(port)], env=env, start_new_session=True,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_ready(url, process=proc, log=log)
        records = request_records(flights[flights["month"] == 4].sample(7, random_state=1), load_spec())
        ids = []
        with httpx.Client(base_url=url, timeout=30) as client:
            for batch in (records[:3], records[3:]):
                body = client.post("/predict", json={"records": batch}).json()
                ids += [p["request_id"] for p in body["predictions"]]
    finally:
        stop_group(proc, timeout=20)  # SIGTERM flushes every capture before it exits

    out = _explain(env, ids[0])
    assert out["record"]["request_id"] == ids[0]
    assert out["model"]["version"] == "2" and out["model"]["aliases_then"]["aliases"]["champion"] == "2"
    assert out["model"]["aliases_then"]["champion_move"]["actor"].startswith("dagster:")
    assert out["run"]["manifest"]["git_sha"] and out["run"]["manifest"]["uv_lock_sha256"]
    assert out["gate"]["status"] == "passed" and out["gate"]["champion_version"] == "1"
    snap = out["snapshot"]
    assert snap["uri"].startswith("s3://") and len(snap["batches"]) == 3
    storage = Storage(root=env["MLOPS_STORAGE_ROOT"], endpoint_url=env["MLOPS_S3_ENDPOINT_URL"])
    for batch in snap["batches"]:  # the landed objects on S3 re-hash to the ids explain printed
        assert batch["uri"].startswith("s3://")
        assert content_id(storage.read_table(batch["uri"], "parquet")) == batch["content_id"]
    assert snap["rows"] == sum(b["rows"] for b in snap["batches"])
    drift = out["training_run"]["drift_reports"]
    assert len(drift) == 1 and drift[0]["champion_version"] == "1" and drift[0]["drift_share"] >= 0
    # the report as the MLflow server serves it (artifacts proxied to its S3 bucket)
    assert drift[0]["reports"][0].startswith("mlflow-artifacts:/")
    assert drift[0]["reports"][0].endswith(".html") and f"drift_{MODEL}_v1_" in drift[0]["reports"][0]

    served = _explain(env, "--snapshot", snap["id"][:12])
    assert [v["version"] for v in served["versions"]] == ["2"]
    assert {s["role"]: s["predictions"] for s in served["versions"][0]["served"]} == {"champion": 7}
