"""The loop closing end to end: a real serving process, the real prediction store, real sensors.

A shortened `mlops-pipeline simulate`: April flights go through `POST /predict`, their true arrival
delays through `POST /feedback`; the day's production assets turn that into a checked prediction
log, quality metrics and a landed feedback batch; the sensors request a retraining that is gated.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import httpx
import pandas as pd
import pytest

from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.defs.simulation import replay, request_records, run_simulation
from mlops_pipeline.monitoring.predictions import PredictionStore
from mlops_pipeline.processes import stop_group
from mlops_pipeline.spec import load_spec

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_loop(trained_flights, tmp_path):
    """A champion trained on Jan–Mar (this test's copy of the session's trained loop, DAGSTER_HOME
    with the project's dagster.yaml), and a real `mlops-pipeline serve` process following it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cli = str(Path(sys.executable).parent / "mlops-pipeline")
    with open(tmp_path / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [cli, "serve", "--port", str(port), "--poll-seconds", "1"],
            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True,
            stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise AssertionError((tmp_path / "serve.log").read_text()[-3000:])
    yield url
    stop_group(proc, timeout=20)


def test_traffic_and_feedback_flow_back_into_a_gated_retraining(served_loop, flights, trained_flights):
    data_dir = trained_flights
    spec = load_spec()
    reports = run_simulation(build_definitions(), flights, spec, served_loop, months=[4], sample=0.02,
                             label_delay=0.2,
                             say=lambda _: None)

    (april,) = reports
    assert april.sent > 400 and april.answered == april.sent
    assert april.labelled > 0.9 * april.sent  # cancelled flights have no arrival delay to report
    store = PredictionStore()
    assert store.count(roles=["champion", "canary"]) == april.answered  # every answer was captured
    labelled = store.read_window(roles=["champion"])["label"].notna().sum()
    assert labelled == april.labelled
    store.close()

    # The day's production assets ran, with the training contract's checks passing on real traffic.
    assert april.checks["inference_contract"] and april.checks["inference_null_rates"]
    assert april.checks["training_serving_skew"]
    assert 0.5 < april.quality["production_roc_auc"] < 0.95
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    feedback = pd.read_parquet(data_dir / "landing" / "flights" / f"feedback_{day}.parquet")
    assert len(feedback) == april.labelled
    assert set(spec.key_columns) <= set(feedback.columns)

    # A sensor asked for a retraining, which went through the gate.
    assert april.retrain_runs, "no sensor requested a retraining"
    run = april.retrain_runs[0]
    assert run["trigger"] in ("drift", "new_data")
    moved = april.champion_after != april.champion_before
    assert moved == run["gate_passed"]
    with dg.DagsterInstance.get() as instance:
        record = instance.get_run_by_id(run["run_id"])
        assert record.tags["mlops/trigger"] == run["trigger"]


def test_a_null_spike_sent_through_the_api_fails_the_inference_checks(served_loop, flights):
    spec = load_spec()
    rows = flights[flights["month"] == 5].sample(300, random_state=1)
    records = request_records(rows, spec)
    for rec in records[:150]:
        rec["temp"] = None  # the weather feed died for half the day
    ids = replay(served_loop, records)
    assert all(ids)

    bad = request_records(rows.head(5), spec)
    bad[0]["distance"] = "far"
    refused = httpx.post(f"{served_loop}/predict", json={"records": bad}, timeout=10)
    assert refused.status_code == 422 and "distance" in refused.text
    assert PredictionStore().count() == 300  # nothing of the refused request was captured

    job = build_definitions().resolve_job_def("production_monitoring")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance, partition_key=datetime.now(UTC).strftime("%Y-%m-%d"), raise_on_error=False
        )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["inference_null_rates"].passed
    assert "column 'temp' 50.0%" in checks["inference_null_rates"].description
    assert checks["inference_contract"].passed  # temp may be null; its *rate* is the problem
