"""No credential in anything a production-profile run leaves behind.

The loop runs through the CLI (`materialize --verbose`, then `rollback` and `history`) on the
production profile: Postgres (its password in the prediction store's URL and in DAGSTER_PG_PASSWORD),
SeaweedFS as S3 (its secret key in AWS_SECRET_ACCESS_KEY) and an MLflow server reached through a
URI with a password. Then every place a secret could land is searched: the commands' output, the
Dagster home (compute logs), the Dagster event log and run records in Postgres, the alias history,
MLflow's runs (params, tags) and model versions (tags, description), and every object the run
wrote to S3.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlops_pipeline.data.storage import Storage
from mlops_pipeline_tests.production.conftest import BUCKET, LOOPBACK, Servers, production_env
from mlops_pipeline_tests.production.test_production import land_on_s3

pytestmark = pytest.mark.slow
CLI = str(Path(sys.executable).parent / "mlops-pipeline")
MODEL = "flights_delay_secrets"
MLFLOW_PASSWORD = "mlfl0w-S3cret-pw"


def _found(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


def test_nothing_a_production_run_leaves_behind_holds_a_secret(servers: Servers, flights: pd.DataFrame,
                                                              tmp_path: Path):
    import yaml

    from mlops_pipeline.spec import PROJECT_ROOT

    spec = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    config = tmp_path / "flights_secrets.yaml"
    config.write_text(yaml.safe_dump({**spec, "name": MODEL}, sort_keys=False))
    secrets = [servers.postgres.password, servers.s3.secret, MLFLOW_PASSWORD]
    env = {**production_env(servers, "secrets", tmp_path / "dagster_home"),
           "MLOPS_DATASET_CONFIG": str(config), "MLOPS_DATA_DIR": str(tmp_path / "local_data"),
           "MLFLOW_TRACKING_URI": f"http://mlops:{MLFLOW_PASSWORD}@{LOOPBACK}:{servers.mlflow.port}",
           "OMP_NUM_THREADS": "1"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        land_on_s3(Storage(), flights, tmp_path / "landed", months=(1,))
    full_env = {**os.environ, **env}
    outputs = []
    for args in (["materialize", "--verbose"], ["rollback"], ["history"]):
        done = subprocess.run([CLI, *args], env=full_env, capture_output=True, text=True, timeout=900)
        outputs.append(done)
    assert outputs[0].returncode == 0, outputs[0].stderr[-3000:]
    printed = "\n".join(o.stdout + o.stderr for o in outputs)
    assert "View run" in printed and "mlops:***@" in printed  # MLflow's own line, masked
    assert not _found(printed, secrets)

    local = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != config.name]
    assert [p for p in local if p.suffix in (".out", ".err")], "no compute logs to search"
    assert not [str(p) for p in local if _found(p.read_text(errors="replace"), secrets)]

    conn = servers.postgres.connect("dagster")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), string_agg(event, '') FROM event_logs")
            events, log = cur.fetchone()
            cur.execute("SELECT string_agg(run_body, '') FROM runs")
            runs = cur.fetchone()[0]
    finally:
        conn.close()
    assert events > 50 and not _found(log + runs, secrets)
    conn = servers.postgres.connect("predictions")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT string_agg(actor || reason, '') FROM alias_events")
            history = cur.fetchone()[0] or ""
    finally:
        conn.close()
    assert MODEL in printed and not _found(history, secrets)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=servers.mlflow.url, registry_uri=servers.mlflow.url)
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert versions
    runs = [client.get_run(v.run_id) for v in versions]
    recorded = " ".join([str(v.tags) + str(v.description) + str(v.source) for v in versions]
                        + [str(r.data.params) + str(r.data.tags) for r in runs])
    assert not _found(recorded, secrets)

    s3 = servers.s3.client()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="secrets/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert keys
    leaking = [k for k in keys if _found(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read().decode(
        "latin-1"), secrets)]
    assert not leaking, leaking
