"""What a run's summary says when a data check blocks it: the champion that stays, by version, and
failure text without a dangling colon (issue 24 item 9)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_pipeline.cli.run_output import first_line
from mlops_pipeline_tests.cli.conftest import Registry
from mlops_pipeline_tests.conftest import SAMPLE

CLI = str(Path(sys.executable).parent / "mlops-pipeline")


def test_a_message_ending_in_a_colon_keeps_what_it_introduces():
    assert first_line("data violates the contract 'flights':\n  dest: missing\n  temp: 12 nulls\n") == (
        "data violates the contract 'flights': dest: missing; temp: 12 nulls")
    assert first_line("nothing follows:") == "nothing follows"
    assert first_line("one line\nand a stack") == "one line"
    assert first_line("") == ""


@pytest.mark.slow
def test_a_blocking_data_check_names_the_champion_that_stays(registry: Registry, flights, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(registry.root, root)
    april = flights[flights["month"] == 4].sample(frac=SAMPLE, random_state=4).reset_index(drop=True)
    april["distance"] = april["distance"].astype(str) + " miles"  # a batch with the wrong dtype
    april.to_parquet(root / "landing" / "flights" / "flights_2013_04.parquet", index=False)
    env = {**os.environ, "MLOPS_DATA_DIR": str(root), "MLOPS_DATASET_CONFIG": str(registry.config),
           "DAGSTER_HOME": str(root / "dagster_home")}
    env.pop("MLFLOW_TRACKING_URI", None)

    done = subprocess.run([CLI, "materialize"], capture_output=True, text=True, env=env, timeout=300)

    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    decision = next(ln for ln in done.stdout.splitlines() if ln.startswith("decision: "))
    expected = "decision: blocked by check dataset_snapshot:batch_dtypes (kept champion v1)"
    assert decision.startswith(expected), decision
    assert "no champion" not in done.stdout
    assert "distance" in decision and "flights_2013_04.parquet" in decision
    for line in done.stdout.splitlines():
        assert not line.rstrip().endswith(":"), line
