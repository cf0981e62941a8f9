"""A bad dataset config is one line naming the field and the fix, before anything lands or starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from mlops_pipeline.spec import PROJECT_ROOT


def _cli(*args: str, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mlops_pipeline.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60)
    return done, time.perf_counter() - started


def _interpreter_start(env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import argparse"], env=env, check=True, timeout=60)
    return time.perf_counter() - started


@pytest.mark.parametrize("command", [["up", "--no-ui"], ["materialize"], ["land"], ["gate"]])
def test_a_config_without_a_required_field_fails_at_once_in_one_line(tmp_path, command):
    doc = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    del doc["target"]["name"]
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump(doc))
    data = tmp_path / "data"
    env = {**os.environ, "MLOPS_DATA_DIR": str(data), "DAGSTER_HOME": str(tmp_path / "home")}

    done, elapsed = _cli(*command, "--config", str(config), env=env)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines == [f"error: {config}: target.name: required — name of the target column the model learns"]
    assert "Traceback" not in done.stdout + done.stderr
    # Nothing landed, no Dagster instance, no run: the check comes first, and costs well under a
    # second on top of starting Python.
    assert not data.exists() and not (tmp_path / "home").exists()
    assert elapsed - _interpreter_start(env) < 1.0, elapsed


def test_a_missing_config_file_is_one_line_too(tmp_path):
    done, _ = _cli("materialize", "--config", str(tmp_path / "nope.yaml"), env=dict(os.environ))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {tmp_path / 'nope.yaml'}: dataset config not found — pass --config PATH or set "
        "MLOPS_DATASET_CONFIG"
    ]
