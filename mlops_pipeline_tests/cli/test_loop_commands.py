"""The README's commands, run as a user runs them (subprocesses of the installed entry point)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "mlops-pipeline")


def _run(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=300)


def test_land_up_and_a_blocked_materialize(tmp_path):
    env = {**os.environ, "MLOPS_DATA_DIR": str(tmp_path / "data")}
    env.pop("DAGSTER_HOME", None)
    env.pop("MLFLOW_TRACKING_URI", None)

    landed = _run("land", "--months", "1", "2", "3", "--sample", "0.12", env=env)
    assert landed.returncode == 0, landed.stderr
    assert landed.stdout.count("landed ") == 3

    up = _run("up", "--no-ui", env=env)
    assert up.returncode == 0, up.stdout + up.stderr[-3000:]
    assert "SUCCESS" in up.stdout
    for check in ("contract_schema", "eval_floor", "no_regression", "input_drift"):
        assert check in up.stdout
    home = tmp_path / "data" / "dagster_home"
    assert (home / "dagster.yaml").exists()  # the run is recorded where the UI will look

    blocked = _run("materialize", "--shuffle-labels", env=env)
    assert blocked.returncode == 1
    lines = blocked.stdout.splitlines()
    line = next(ln for ln in lines if ln.startswith("model_version") and "eval_floor" in ln)
    assert "False" in line and "roc_auc" in line

    os.environ["DAGSTER_HOME"], old = str(home), os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            assert [r.status for r in runs] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS]
            assert instance.get_latest_materialization_event(dg.AssetKey("champion_model")) is not None
    finally:
        if old is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = old
