"""`mlops-pipeline up --profile production`, run as a user runs it: every process of the production
topology on loopback (PostgreSQL, S3, the MLflow server, a gRPC code server, the Dagster daemon
and webserver on Postgres storage, two serving replicas behind HAProxy, Prometheus), wired as
docs/production.md draws it, and all of it gone after SIGTERM.

The path under test is Dagster's own engine: the batches `up` lands on S3 are found by
`new_data_sensor` evaluated in the daemon, whose queued run coordinator launches the run in its
own process; the run promotes a champion on the MLflow server; both replicas behind HAProxy
answer with it; their answers land in the one Postgres prediction store; Prometheus scrapes every
target. And as deployed it survives its parts dying: the daemon killed mid-run is restarted by
`up` without losing or repeating the run, and PostgreSQL killed and restarted is reconnected to by
every component on its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops_pipeline.processes import group_alive, stop_group
from mlops_pipeline_tests.production.conftest import VENV_BIN

SAMPLE = 0.05  # of each of January-March: a fast first training


def _wait(what: str, check: Any, proc: subprocess.Popen, log: Path, timeout: float = 600) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"`up` exited with {proc.returncode} while waiting for {what}:\n" \
            + log.read_text()[-3000:]
        try:
            last = check()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - a server coming back answers errors meanwhile
            last = exc
        time.sleep(0.5)
    tail = log.read_text()[-3000:]
    raise TimeoutError(f"{what} not reached after {timeout:.0f}s (last: {last!r}):\n{tail}")


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict, subprocess.Popen, Path]]:
    import tempfile

    # Not pytest's tmp_path: its 0700 parents would stop the unprivileged postgres user.
    state = Path(tempfile.mkdtemp(prefix="mlops-topology-"))
    os.chmod(state, 0o755)
    log = tmp_path_factory.mktemp("up") / "up.log"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLOPS_", "MLFLOW_", "DAGSTER_", "AWS_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.Popen(
        [str(VENV_BIN / "mlops-pipeline"), "up", "--profile", "production", "--land-sample", str(SAMPLE),
         "--state-dir", str(state)],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )
    try:
        described = _wait("the topology", lambda: json.loads((state / "topology.json").read_text()),
                          proc, log)
        yield described, proc, state
    finally:
        stop_group(proc, timeout=90)


def _run_of_sensor(urls: dict[str, str]) -> dict:
    """The daemon's run, as the webserver reads it from the Dagster instance in Postgres."""
    query = """{ runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: "new_data_sensor"}]}) {
        ... on Runs { results { runId status tags { key value } } } } }"""
    answer = httpx.post(f"{urls['dagster']}/graphql", json={"query": query}, timeout=30).json()
    runs = answer["data"]["runsOrError"]["results"]
    return runs[0] if runs else {}


def _captured(engine: Any) -> int:
    import sqlalchemy as sa

    from mlops_pipeline.monitoring.predictions.schema import batches_table

    with engine.connect() as db:
        return int(db.execute(sa.select(sa.func.sum(batches_table.c.records))).scalar() or 0)


def _pids(state: Path) -> dict[str, int]:
    return json.loads((state / "topology.json").read_text())["pids"]


def _restarted(state: Path, name: str, old: int) -> int:
    return (pid := _pids(state)[name]) != old and pid


def test_up_production_trains_through_the_daemon_and_serves_through_haproxy(topology) -> None:
    described, proc, state = topology
    urls = described["urls"]
    log = state / "logs" / "daemon.log"
    # The daemon dies mid-run (kill -9) and is restarted by `up`: the run is neither lost nor
    # launched twice, and the alias moves once.
    started = _wait("the sensor's run started", lambda: (r := _run_of_sensor(urls))
                    and r["status"] in ("STARTED", "SUCCESS") and r, proc, log)
    assert started["status"] == "STARTED", "the run ended before the daemon could be killed mid-run"
    daemon = described["pids"]["daemon"]
    os.killpg(daemon, signal.SIGKILL)
    _wait("the daemon restarted", lambda: _restarted(state, "daemon", daemon), proc, log, 120)
    run = _wait("a successful run requested by new_data_sensor",
                lambda: (r := _run_of_sensor(urls)) and r["status"] == "SUCCESS" and r, proc, log)
    assert run["runId"] == started["runId"]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["mlops/trigger"] == "new_data"
    # Launched out of process by the queued run coordinator (DefaultRunLauncher: its own process).
    code_log = (state / "logs" / "code_server.log").read_text()
    run_pids = {line.split("(pid: ")[1].split(")")[0] for line in code_log.splitlines()
                if run["runId"] in line and "Executing steps in process" in line}
    assert run_pids and str(described["pids"]["code_server"]) not in run_pids, code_log[-2000:]
    done = time.monotonic()

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=urls["mlflow"], registry_uri=urls["mlflow"])
    champion = client.get_model_version_by_alias("flights_delay", "champion")
    assert champion.run_id and champion.version == "1"
    query = """{ runsOrError { ... on Runs { results { runId } } } }"""
    every_run = httpx.post(f"{urls['dagster']}/graphql", json={"query": query}, timeout=30).json()
    assert len(every_run["data"]["runsOrError"]["results"]) == 1  # nothing launched twice
    assert [v.version for v in client.search_model_versions("name='flights_delay'")] == ["1"]
    for replica in ("replica1", "replica2"):  # each follows the alias on its own
        _wait(f"{replica} serving v{champion.version}",
              lambda r=replica: httpx.get(f"{urls[r]}/health").json()["model_version"] == champion.version,
              proc, state / "logs" / f"{replica}.log", timeout=120)
    followed = time.monotonic() - done
    _wait("HAProxy routing to the replicas",
          lambda: httpx.get(f"{urls['serving']}/ready").status_code == 200,
          proc, state / "logs" / "haproxy.log", timeout=60)

    import pandas as pd

    from mlops_pipeline.data.landing import load_flights_with_weather
    from mlops_pipeline.spec import load_spec

    columns = load_spec().features.columns
    rows = load_flights_with_weather().head(40)[columns]
    records = json.loads(pd.DataFrame(rows).to_json(orient="records", date_format="iso"))
    versions = set()
    with httpx.Client(timeout=30) as http:
        for record in records:
            answer = http.post(f"{urls['serving']}/predict", json={"records": [record]})
            assert answer.status_code == 200, answer.text
            versions.add(answer.json()["model_version"])
    assert versions == {champion.version}

    import sqlalchemy as sa


    env = dict(line.split("=", 1) for line in (state / "production.env").read_text().splitlines())
    engine = sa.create_engine(env["MLOPS_PREDICTIONS_URL"])
    try:
        captured = _captured(engine)
    finally:
        engine.dispose()
    assert captured == len(records)  # both replicas capture into the one Postgres store
    replicas_used = [float(line.rsplit(" ", 1)[1])
                     for r in ("replica1", "replica2")
                     for line in httpx.get(f"{urls[r]}/metrics").text.splitlines()
                     if line.startswith("mlops_predict_requests_total{")]
    assert len([n for n in replicas_used if n > 0]) == 2, replicas_used  # HAProxy spread the load

    targets = _wait("every Prometheus target up", lambda: (t := httpx.get(
        f"{urls['prometheus']}/api/v1/targets").json()["data"]["activeTargets"])
        and all(x["health"] == "up" for x in t) and t, proc, state / "logs" / "prometheus.log", 120)
    assert {t["labels"]["job"] for t in targets} == {"mlops-serving", "prometheus"}
    assert len([t for t in targets if t["labels"]["job"] == "mlops-serving"]) == 2
    print(f"\ntopology: both replicas served the new champion {followed:.1f} s after its run ended")

    # PostgreSQL dies (kill -9) and is restarted by `up`: every component reconnects on its own.
    before = _pids(state)
    os.killpg(before["postgres"], signal.SIGKILL)
    _wait("PostgreSQL restarted", lambda: _restarted(state, "postgres", before["postgres"]), proc,
          state / "postgres.log", 120)
    _wait("the webserver reading runs again", lambda: _run_of_sensor(urls)["status"] == "SUCCESS",
          proc, state / "logs" / "webserver.log", 120)
    _wait("the MLflow server reading the registry again",
          lambda: client.get_model_version_by_alias("flights_delay", "champion").version == "1",
          proc, state / "mlflow.log", 120)
    _wait("an answer through HAProxy, captured again",
          lambda: httpx.post(f"{urls['serving']}/predict", json={"records": records[:1]},
                             timeout=30).status_code == 200, proc, state / "logs" / "replica1.log", 120)
    engine = sa.create_engine(env["MLOPS_PREDICTIONS_URL"])
    try:
        _wait("the capture in the Postgres store", lambda: _captured(engine) > len(records), proc,
              state / "logs" / "replica1.log", 120)
    finally:
        engine.dispose()
    after = _pids(state)
    assert {k: v for k, v in after.items() if k != "postgres"} == \
        {k: v for k, v in before.items() if k != "postgres"}  # reconnected, none restarted

    # SIGTERM stops every process of the topology; nothing is left behind.
    pids = [*described["pids"].values(), *after.values()]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    leftover = [p for p in pids if group_alive(p)]
    assert not leftover, f"still running after `up` stopped: {leftover}"
