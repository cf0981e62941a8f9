"""The Dagster UI driven the way a person uses it: real `dagster dev`, real MLflow UI, real Chromium.

Stack: `dagster dev` (webserver + daemon, QueuedRunCoordinator from the project's dagster.yaml) and
`mlflow server` on free loopback ports, both on one temporary data dir with a landed ~12% sample and
one SQLite MLflow database, exactly the pair `mlops-pipeline up` starts. The loop runs twice, as in
production: Jan-Feb landed, run (v1 becomes champion; its drift report: holdout vs training split); March
landed, run again (v2 is compared with v1, and the new rows' drift report is made). The MLflow server is what
makes the drift report one click away: the asset's `report` link (MLOPS_MLFLOW_UI_URL) opens the
MLflow run, which serves the Evidently HTML as an artifact over HTTP; browsers refuse `file://` links
from an http page, so `report_path` alone could not be opened.

Debian's /usr/bin/chromium is driven by Playwright (never `playwright install`: no downloads).
Screenshots go to a temporary folder; with MLOPS_UPDATE_SCREENSHOTS=1 they refresh docs/ (used by
the README), so a test run never dirties the work tree on its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mlops_pipeline.data.landing import land_months
from mlops_pipeline.processes import stop_group
from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline_tests.conftest import SAMPLE, skip_or_fail

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DOCS = PROJECT_ROOT / "docs"


def _screenshot_dir(tmp: Path) -> Path:
    return DOCS if os.environ.get("MLOPS_UPDATE_SCREENSHOTS") == "1" else tmp
LOOP_ASSETS = ["dataset_snapshot", "training_features", "trained_model", "model_version",
               "champion_model", "drift_report"]
CHECKED_ASSETS = ["dataset_snapshot", "training_features", "model_version", "drift_report"]
RUN_TIMEOUT_S = 300
LOCATION = "mlops_pipeline.defs.definitions"  # workspace.yaml's python_module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    dagster_url: str
    mlflow_url: str
    data_dir: Path
    logs: Path

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.dagster_url}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            out = json.loads(resp.read())
        assert "errors" not in out, out
        return out["data"]

    def runs(self) -> list[dict]:
        data = self.graphql("{ runsOrError { ... on Runs { results { runId status } } } }")
        return data["runsOrError"]["results"]


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Own session, default INT/TERM handlers: stoppable by PID even from a background shell."""
    return subprocess.Popen(
        ["env", "--default-signal=INT,TERM", *cmd], cwd=PROJECT_ROOT, env=env,
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def _stop(*procs: subprocess.Popen) -> None:
    stop_group(*procs, timeout=20)  # all signalled at once: their shutdowns overlap


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


def _sensor_states(stack: Stack) -> list[dict]:
    data = stack.graphql(
        "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {"
        " __typename ... on RepositoryLocation {"
        " repositories { sensors { name sensorState { id status } } } }"
        " ... on PythonError { message } } } } } }"
    )
    entries = data["workspaceOrError"]["locationEntries"]
    states = []
    for entry in entries:
        location = entry["locationOrLoadError"]
        if location is None:  # still loading
            return []
        assert location["__typename"] == "RepositoryLocation", location
        for repo in location["repositories"]:
            states.extend(repo["sensors"])
    return states


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, flights: pd.DataFrame) -> Iterator[Stack]:
    if not CHROMIUM.exists():
        skip_or_fail("Debian chromium is missing: apt-get install -y chromium chromium-driver")
    base = tmp_path_factory.mktemp("ui")
    data, home, logs = base / "data", base / "dagster_home", base / "logs"
    for d in (data / "mlflow", home, logs):
        d.mkdir(parents=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    dagster_port, mlflow_port = _free_port(), _free_port()
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "MLOPS_DATASET_CONFIG", "MLOPS_ALERT_WEBHOOK_URL")}
    env.update({
        "MLOPS_DATA_DIR": str(data), "DAGSTER_HOME": str(home),
        "MLOPS_MLFLOW_UI_URL": f"http://127.0.0.1:{mlflow_port}",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    mlflow_proc = _start(
        [str(bin_dir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
         "--backend-store-uri", f"sqlite:///{data / 'mlflow' / 'mlflow.db'}", "--workers", "1"],
        env, logs / "mlflow.log",
    )
    dagster_proc = _start(
        [str(bin_dir / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(dagster_port),
         "-w", str(PROJECT_ROOT / "workspace.yaml")],
        env, logs / "dagster.log",
    )
    try:
        s = Stack(f"http://127.0.0.1:{dagster_port}", f"http://127.0.0.1:{mlflow_port}", data, logs)
        _wait_http(f"{s.dagster_url}/server_info", dagster_proc, logs / "dagster.log")
        deadline = time.monotonic() + 60
        while not (sensors := _sensor_states(s)) and time.monotonic() < deadline:
            time.sleep(0.5)
        # The project's sensors (new data, drift) would launch the loop on their own as soon as data
        # lands; switch them off first (the mutation the UI's toggle sends), so the run the test
        # watches is the one it launched. Only then land the sample.
        for sensor in sensors:
            if sensor["sensorState"]["status"] == "RUNNING":
                s.graphql("mutation($id: String) { stopSensor(id: $id) { __typename } }",
                          {"id": sensor["sensorState"]["id"]})
        assert all(x["sensorState"]["status"] == "STOPPED" for x in _sensor_states(s))
        assert s.runs() == []
        land_months(data / "landing" / "flights", (1, 2), SAMPLE, frame=flights)
        # The first-visit "Join the community" dialog would cover the page.
        assert s.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
        _wait_http(f"{s.mlflow_url}/health", mlflow_proc, logs / "mlflow.log")
        yield s
    finally:
        _stop(dagster_proc, mlflow_proc)


@pytest.fixture(scope="module")
def browser(stack: Stack):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # A fresh temporary profile per launch (Playwright's default): no state between runs.
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _expand_graph(page) -> None:
    """Groups start collapsed when there are several; the graph's context menu expands them all."""
    page.get_by_role("button", name=re.compile("Materialize all")).wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    box = page.viewport_size
    page.mouse.click(box["width"] * 0.45, box["height"] * 0.15, button="right")  # empty canvas
    item = page.get_by_role("menuitem", name=re.compile("Expand all groups"))
    try:
        item.click(timeout=5_000)
    except Exception:  # noqa: BLE001 - a single group is shown expanded and has no such item
        page.keyboard.press("Escape")


def _wait_for_run(stack: Stack, run_id: str) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = ""
    while time.monotonic() < deadline:
        status = next(r["status"] for r in stack.runs() if r["runId"] == run_id)
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(0.5)
    return status


def _checks() -> dict[str, list[str]]:
    """Every check the code location defines on the loop's checked assets (what the UI must list)."""
    from mlops_pipeline.defs.definitions import build_definitions

    keys = build_definitions().resolve_asset_graph().asset_check_keys
    out = {asset: sorted(k.name for k in keys if k.asset_key.to_user_string() == asset)
           for asset in CHECKED_ASSETS}
    assert "snapshot_matches_content_id" in out["dataset_snapshot"]
    assert {"eval_floor", "no_regression"} <= set(out["model_version"])
    assert {"input_drift", "prediction_drift"} <= set(out["drift_report"])
    return out


def _launch_loop(stack: Stack, page, runs_before: int) -> str:
    """ "Materialize all" on the loop job's graph: one more run, queued then started by the daemon.
    (The location also holds partitioned production assets, for which the global "Materialize all"
    opens a backfill dialog instead.)"""
    page.goto(f"{stack.dagster_url}/locations/{LOCATION}/jobs/mlops_loop")
    page.get_by_role("button", name=re.compile("Materialize all")).click()
    deadline = time.monotonic() + 30
    while len(runs := stack.runs()) == runs_before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(runs) == runs_before + 1, runs
    return runs[0]["runId"]  # newest first


def _assert_success(stack: Stack, run_id: str) -> None:
    status = _wait_for_run(stack, run_id)
    assert status == "SUCCESS", (status, (stack.logs / "dagster.log").read_text()[-4000:])


def test_materialize_all_from_the_asset_graph_and_open_the_drift_report(
        stack: Stack, browser, tmp_path, flights: pd.DataFrame):
    shots = _screenshot_dir(tmp_path)
    shots.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()

    # 1. The asset graph shows every asset of the loop.
    page.goto(f"{stack.dagster_url}/asset-groups")
    _expand_graph(page)
    for asset in LOOP_ASSETS:
        page.get_by_text(asset, exact=True).filter(visible=True).first.wait_for()

    # 2. On the loop job's own graph, "Materialize all" launches the first run (Jan-Feb landed).
    run_id = _launch_loop(stack, page, 0)

    # 3. While it runs: every check of the loop is listed on its asset's Checks tab.
    for asset, checks in _checks().items():
        page.goto(f"{stack.dagster_url}/assets/{asset}?view=checks")
        page.get_by_text(f"Checks ({len(checks)})").wait_for()
        for check in checks:
            page.get_by_text(check, exact=True).filter(visible=True).first.wait_for()

    # 4. The first run succeeds: v1 is champion. March lands and the second run compares v2 with
    # it and reports the new rows' drift; its page says it succeeded.
    _assert_success(stack, run_id)
    land_months(stack.data_dir / "landing" / "flights", (3,), SAMPLE, frame=flights)
    run_id = _launch_loop(stack, page, 1)
    _assert_success(stack, run_id)
    page.goto(f"{stack.dagster_url}/runs/{run_id}")
    page.get_by_text("Success", exact=True).filter(visible=True).first.wait_for()
    page.get_by_text("drift_report", exact=True).filter(visible=True).first.wait_for()
    page.wait_for_timeout(1500)  # let the Gantt chart settle for the screenshot
    page.screenshot(path=str(shots / "run-success.png"))

    page.goto(f"{stack.dagster_url}/asset-groups")
    _expand_graph(page)
    page.get_by_text("drift_report", exact=True).filter(visible=True).first.wait_for()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(shots / "asset-graph.png"))

    # 5. The drift_report asset page links to the MLflow run holding the Evidently report.
    page.goto(f"{stack.dagster_url}/assets/drift_report")
    page.get_by_text("report_path").first.wait_for()
    link = page.locator(f"a[href^='{stack.mlflow_url}/#/experiments/']").first
    link.wait_for()
    with context.expect_page() as opened:
        link.click()
    mlflow_page = opened.value
    mlflow_page.wait_for_load_state()
    assert mlflow_page.url.startswith(f"{stack.mlflow_url}/#/experiments/")
    mlflow_page.get_by_role("tab", name="Artifacts").click()
    mlflow_page.get_by_text(re.compile(r"^drift_flights_delay_v1_.*\.html$")).first.click()
    report = mlflow_page.frame_locator("iframe").first
    report.get_by_text("Dataset Drift").first.wait_for(timeout=60_000)
    report.get_by_text("Drifted Columns").first.wait_for()
    close = mlflow_page.get_by_role("button", name=re.compile("close", re.I))
    if close.count():  # the MLflow Assistant side panel would take a third of the screenshot
        close.first.click()
    mlflow_page.wait_for_timeout(1500)
    mlflow_page.screenshot(path=str(shots / "drift-report.png"))

    # 6. The MLflow UI's page of v2 shows its model card as the version's description.
    mlflow_page.goto(f"{stack.mlflow_url}/#/models/flights_delay/versions/2")
    mlflow_page.get_by_text("Intended use").first.wait_for(timeout=60_000)
    mlflow_page.get_by_text(re.compile("Gate:")).first.wait_for()
    mlflow_page.get_by_text(re.compile("passed against champion v1")).first.wait_for()
    mlflow_page.get_by_text("Known limits").first.wait_for()
    if close.count():
        close.first.click()
    mlflow_page.wait_for_timeout(1500)
    mlflow_page.screenshot(path=str(shots / "model-card.png"), full_page=True)
    context.close()

    for name in ("asset-graph.png", "run-success.png", "drift-report.png", "model-card.png"):
        assert (shots / name).stat().st_size > 20_000, name
