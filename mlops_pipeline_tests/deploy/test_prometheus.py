"""deploy/prometheus: the config and rules are valid for promtool, every alert has unit tests that
fire and stay quiet, and a real Prometheus server scraping a real serving process computes
recording rules that agree with what the prediction store recorded."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline_tests.conftest import SAMPLE, skip_or_fail
from mlops_pipeline_tests.webhook import Webhook

PROM_DIR = PROJECT_ROOT / "deploy" / "prometheus"
RULES = [PROM_DIR / "rules" / "recording.yml", PROM_DIR / "rules" / "alerts.yml"]
UNIT_TESTS = Path(__file__).parent / "alerts_test.yml"
PRICE = 0.08  # USD per core-hour, through MLOPS_COST_PER_CORE_HOUR (the default is 0.05)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} not installed (Debian: apt-get install prometheus)")
    assert path is not None
    return path


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_config_and_the_rules() -> None:
    promtool = _binary("promtool")
    config = _run([promtool, "check", "config", str(PROM_DIR / "prometheus.yml")])
    assert config.returncode == 0, config.stdout + config.stderr
    assert "2 rule files found" in config.stdout + config.stderr
    rules = _run([promtool, "check", "rules", *map(str, RULES)])
    assert rules.returncode == 0, rules.stdout + rules.stderr


def _alerts() -> list[str]:
    groups = yaml.safe_load(RULES[1].read_text())["groups"]
    return [r["alert"] for g in groups for r in g["rules"] if "alert" in r]


def test_every_alert_has_unit_tests_that_fire_and_stay_quiet() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    for alert in _alerts():
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"no test where {alert} fires"
        assert any(not c["exp_alerts"] for c in mine), f"no test where {alert} stays quiet"
    unit = _run([_binary("promtool"), "test", "rules", str(UNIT_TESTS)])
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert "SUCCESS" in unit.stdout + unit.stderr


# ---- a real Prometheus against a real serving process ----------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, flights: pd.DataFrame) -> Iterator[Any]:
    """`mlops-pipeline serve` on a champion registered by the pipeline (embedded registry)."""
    from mlops_pipeline.data.landing import land_months
    from mlops_pipeline_tests.serving.conftest import BIN, Stack, _run_assets, start_server, stop

    root = tmp_path_factory.mktemp("prom")
    data = root / "data"
    env = {**os.environ, "MLOPS_DATA_DIR": str(data), "DAGSTER_HOME": str(root / "dagster_home"),
           "MLOPS_COST_PER_CORE_HOUR": str(PRICE),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for key in ("MLFLOW_TRACKING_URI", "MLOPS_DATASET_CONFIG", "MLOPS_SERVE_COST_PER_CORE_HOUR"):
        env.pop(key, None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_DATA_DIR", env["MLOPS_DATA_DIR"])
        mp.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLOPS_DATASET_CONFIG", raising=False)
        land_months(data / "landing" / "flights", (1,), SAMPLE, frame=flights)
        result = _run_assets(["dataset_snapshot", "training_features", "trained_model",
                              "model_version", "champion_model"])
        assert result.success, "registering a champion through the pipeline failed"
        from mlops_pipeline.data.preparation import SPLIT_COLUMN
        from mlops_pipeline.spec import load_spec

        features = load_spec().features.columns
        frame = pd.read_parquet(result.output_for_node("training_features").location)
        holdout = frame[frame[SPLIT_COLUMN] == "holdout"][features].reset_index(drop=True)
    stack = Stack(root, data, "", env, holdout, list(features))
    # A canary share from the start: it routes nothing until a challenger alias exists (the
    # alerting test sets one), so the first test sees the champion alone.
    srv = start_server(stack, "served", "--canary-share", "0.5", "--poll-seconds", "1")
    try:
        yield stack, srv
    finally:
        stop(srv.proc)


class Prom:
    def __init__(self, url: str):
        self.url = url
        self.client = httpx.Client(timeout=10)

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        body = self.client.get(f"{self.url}/api/v1/query", params=params).json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def one(self, expr: str, at: float | None = None) -> float:
        result = self.query(expr, at)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    def wait(self, what: str, check: Any, proc: subprocess.Popen, log: Path, timeout: float = 30) -> Any:
        deadline = time.time() + timeout
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            value = check()
            if value:
                return value
            assert time.time() < deadline, f"timed out waiting for {what}\n{log.read_text()[-2000:]}"
            time.sleep(0.2)


@contextlib.contextmanager
def start_prometheus(port: int, tmp_path: Path, rules: list[Path] = RULES,
                     alertmanager: str | None = None) -> Iterator[tuple[Prom, subprocess.Popen, Path]]:
    """Prometheus on a free loopback port, `rules` (the shipped ones by default), the shipped
    serving job pointed at the server on `port`, scraping and evaluating every second, sending
    alerts to `alertmanager` (host:port) when given; stopped by PID."""
    from mlops_pipeline_tests.serving.conftest import free_port, start, stop, wait_http

    binary = _binary("prometheus")
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(p) for p in rules]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "mlops-serving")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"], "labels": {"service": "mlops-serving"}}]
    config["scrape_configs"] = [job]
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp_path / "prometheus.log"
    proc = start([binary, f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                  f"--web.listen-address=127.0.0.1:{port}"], dict(os.environ), log)
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", proc, log, timeout=30)
        yield Prom(f"http://127.0.0.1:{port}"), proc, log
    finally:
        stop(proc)


@pytest.fixture
def prometheus(served: Any, tmp_path: Path) -> Iterator[tuple[Prom, subprocess.Popen, Path]]:
    """`start_prometheus` on the shipped rules against the module's server."""
    with start_prometheus(served[1].port, tmp_path) as prom:
        yield prom


def _store(url: str) -> pd.DataFrame:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql("SELECT batch_id, role, model_version, records, latency_ms, ts "
                               "FROM prediction_batches ORDER BY ts", conn)
    finally:
        engine.dispose()


def _bucket(value: float, bounds: list[float]) -> tuple[float, float]:
    """(lower, upper] of the histogram bucket that holds `value`."""
    lower = 0.0
    for upper in bounds:
        if value <= upper:
            return lower, upper
        lower = upper
    return lower, math.inf


def test_real_prometheus_recording_rules_match_the_prediction_store(served: Any, prometheus: Any) -> None:
    from mlops_pipeline.serving.metrics import LATENCY_BUCKETS
    from mlops_pipeline_tests.serving.conftest import records

    stack, srv = served
    prom, proc, log = prometheus
    http = httpx.Client(base_url=srv.url, timeout=30)
    before = _store(srv.predictions_url)
    # One request first, so every series exists and Prometheus has a sample of it from before the
    # load: the 1m rates then cover exactly the load.
    assert http.post("/predict", json={"records": records(stack, 1)}).status_code == 200
    warm = len(before) + 1
    prom.wait("the target scraped", lambda: any(
        float(r["value"][1]) == warm for r in prom.query("mlops_predict_requests_total")), proc, log)
    assert prom.one('up{job="mlops-serving"}') == 1
    # Every error kind is a series from the start, at zero: the first errors of a kind (a capture
    # failure after a restart) are an increase that rates and alerts see, not a series born non-zero.
    assert [float(r["value"][1]) for r in prom.query('mlops_errors_total{kind="capture"}')] == [0.0]
    base_cost = prom.one("sum(mlops_scoring_cost_usd_total)")
    base_records = prom.one("sum(mlops_scored_records_total)")

    rng = np.random.default_rng(7)
    bad = 0
    for i in range(120):
        if i % 15 == 14:  # a contract violation now and then: a 4xx, not a server error
            r = http.post("/predict", json={"records": [{"nope": 1}]})
            assert r.status_code == 422, r.text
            bad += 1
            continue
        n = int(rng.integers(1, 40))
        r = http.post("/predict", json={"records": records(stack, n, offset=int(rng.integers(0, 500)))})
        assert r.status_code == 200, r.text

    store = _store(srv.predictions_url)
    load = store.iloc[warm:]
    assert len(store) == warm + 120 - bad and set(store["role"]) == {"champion"}
    version = str(store["model_version"].iloc[-1])

    # Prometheus holds what the store holds.
    prom.wait("the load scraped", lambda: prom.query("mlops_predict_requests_total")
              and prom.one("sum(mlops_predict_requests_total)") == len(store), proc, log)
    scraped = time.time()
    at = prom.wait("rules evaluated after the load", lambda: (
        (r := prom.query("mlops:predict_requests:rate1m")) and float(r[0]["value"][0]) > scraped + 1.5
        and float(r[0]["value"][0])), proc, log)
    assert prom.one("sum(mlops_predictions_total)", at) == store["records"].sum()
    assert prom.one("sum(mlops_scored_records_total)", at) == store["records"].sum()
    assert prom.one('sum(mlops_errors_total{kind="validation"})', at) == bad

    # QPS per version and role: the rule's rate over the 1m window covers the load; Prometheus
    # extrapolates a little past the first and last samples, never below the true increase.
    qps = prom.query("mlops:predict_requests:rate1m", at)
    assert [(q["metric"]["model_version"], q["metric"]["role"], q["metric"]["job"]) for q in qps] == [
        (version, "champion", "mlops-serving")]
    assert len(load) <= float(qps[0]["value"][1]) * 60 <= 2 * len(load)

    # Latency per version and role against the store's latency_ms of the same requests: within the
    # histogram bucket that holds the store's own quantile.
    latencies = np.sort(load["latency_ms"].to_numpy() / 1000.0)
    for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        selector = f'{{role="champion",model_version="{version}"}}'
        got = prom.one(f"mlops:scoring_latency_seconds:{name}{selector}", at)
        true = latencies[math.ceil(q * len(latencies)) - 1]
        lo, hi = _bucket(true, list(LATENCY_BUCKETS))
        assert lo - 1e-9 <= got <= hi + 1e-9, (name, got, true, (lo, hi))
        request = prom.one(f'mlops:request_latency_seconds:{name}{{endpoint="predict"}}', at)
        assert request >= lo - 1e-9, (name, request, lo)  # the whole request includes the scoring

    # Errors: 422s are counted by kind but are not server errors.
    assert prom.one("mlops:server_error_ratio:rate1m", at) == 0
    assert prom.one('mlops:errors:rate1m{kind="validation"}', at) > 0

    # Cost: CPU seconds at the configured price, per 1,000 records of the load.
    assert prom.one("mlops_cost_per_core_hour_usd", at) == PRICE
    cpu = prom.one("sum(mlops_scoring_cpu_seconds_total)", at)
    cost = prom.one("sum(mlops_scoring_cost_usd_total)", at)
    assert cpu > 0 and cost == pytest.approx(cpu * PRICE / 3600, rel=1e-6)
    per_1k = prom.one(f'mlops:cost_per_1k_predictions_usd:rate1m{{model_version="{version}"}}', at)
    expected = 1000 * (cost - base_cost) / (prom.one("sum(mlops_scored_records_total)", at) - base_records)
    assert load["records"].sum() == prom.one("sum(mlops_scored_records_total)", at) - base_records
    # (the two counters' rates are extrapolated to the window's start by slightly different spans)
    assert per_1k == pytest.approx(expected, rel=0.05)
    cpu_1k = prom.one(f'mlops:cpu_seconds_per_1k_predictions:rate1m{{model_version="{version}"}}', at)
    assert per_1k == pytest.approx(cpu_1k * PRICE / 3600, rel=1e-6)

    # Every rule of both groups evaluates without error on real data.
    groups = httpx.get(f"{prom.url}/api/v1/rules").json()["data"]["groups"]
    assert {g["name"] for g in groups} == {"mlops_serving", "mlops_serving_alerts"}
    broken = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert not broken, broken


# ---- paging the owner: Prometheus -> Alertmanager -> the owner's receiver --------------------

ALERTMANAGER_CONFIG = PROJECT_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


@contextlib.contextmanager
def _alertmanager(tmp_path: Path, hook: Webhook) -> Iterator[str]:
    """Debian's Alertmanager on a free loopback port with the shipped routing; its receivers'
    URLs point at `hook` (same paths), grouping waits 1 s instead of 30 s; clustering off."""
    from mlops_pipeline_tests.serving.conftest import free_port, start, stop, wait_http

    binary = _binary("prometheus-alertmanager")
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = hook.base + "/" + webhook["url"].rsplit("/", 1)[1]
    config["route"].update(group_wait="1s", group_interval="1s")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    check = _run([_binary("amtool"), "check-config", str(path)])
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    log = tmp_path / "alertmanager.log"
    proc = start([binary, f"--config.file={path}", f"--storage.path={tmp_path / 'am'}",
                  f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                 dict(os.environ), log)
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", proc, log, timeout=30)
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


def _paging_rules(tmp_path: Path) -> list[Path]:
    """The shipped rules with the canary alert made testable in seconds: `for: 0s` instead of 5m,
    and a 0.1 ms SLO instead of 50 ms, so this real canary's real p99 breaches it."""
    groups = yaml.safe_load(RULES[1].read_text())
    rule = next(r for g in groups["groups"] for r in g["rules"] if r.get("alert") == "MlopsCanarySLOBreach")
    assert rule["expr"].count("> 0.05") == 2, rule["expr"]  # the SLO, in both branches
    rule["expr"] = rule["expr"].replace("> 0.05", "> 0.0001")
    rule["for"] = "0s"
    path = tmp_path / "alerts.yml"
    path.write_text(yaml.safe_dump(groups))
    return [RULES[0], path]


def test_a_canary_breaching_its_slo_pages_its_owner_through_alertmanager(served: Any, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from mlops_pipeline.spec import load_spec
    from mlops_pipeline_tests.serving.conftest import records

    stack, srv = served
    spec = load_spec()
    assert spec.owner and spec.runbook_url
    # The server names who is paged for its model.
    metrics = httpx.get(f"{srv.url}/metrics").text
    assert (f'mlops_model_owner_info{{model_name="{spec.name}",owner="{spec.owner}",'
            f'runbook_url="{spec.runbook_url}"}} 1.0') in metrics

    # A challenger: the champion's model registered again, gets canary traffic (share 0.5).
    uri = f"sqlite:///{stack.data_dir / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(spec.name, "champion")
    canary = client.create_model_version(spec.name, champion.source, run_id=champion.run_id)
    client.set_registered_model_alias(spec.name, "challenger", canary.version)
    hook = Webhook()
    try:
        with _alertmanager(tmp_path, hook) as am, start_prometheus(
                srv.port, tmp_path, _paging_rules(tmp_path), alertmanager=am) as (prom, proc, log):
            http = httpx.Client(base_url=srv.url, timeout=30)
            prom.wait("the challenger loaded", lambda: http.get("/health").json().get("challenger"),
                      proc, log, timeout=60)

            def paged() -> list[dict]:
                r = http.post("/predict", json={"records": records(stack, 3)})
                assert r.status_code == 200, r.text
                return [a for path, body in hook.posts for a in body["alerts"]
                        if a["labels"]["alertname"] == "MlopsCanarySLOBreach" and path == f"/{spec.owner}"]

            alerts = prom.wait("the canary alert at the owner's receiver", paged, proc, log, timeout=90)
    finally:
        hook.close()
        client.delete_registered_model_alias(spec.name, "challenger")
    labels, annotations = alerts[0]["labels"], alerts[0]["annotations"]
    assert labels["owner"] == spec.owner and labels["model_name"] == spec.name
    assert labels["model_version"] == str(canary.version) and labels["role"] == "canary"
    assert labels["runbook_url"] == annotations["runbook_url"] == spec.runbook_url
    assert annotations["owner"] == spec.owner and "mlops-pipeline rollback" in annotations["description"]
    # routed by owner: nothing reached the default on-call receiver for this alert
    assert not [b for p, b in hook.posts if p == "/on-call"
                and any(a["labels"]["alertname"] == "MlopsCanarySLOBreach" for a in b["alerts"])]
