"""The on-call board renders in every state a Dagster instance can be in: checks planned by a run
that failed before evaluating them, a run that failed mid-way, no traffic captured yet."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlops_pipeline.defs.definitions import build_definitions

pytestmark = pytest.mark.slow  # runs the loop job (it fails early, but it is the loop)


def _board(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict:
    result = defs.resolve_job_def("monitoring_board_job").execute_in_process(instance=instance)
    assert result.success
    metadata = result.asset_materializations_for_node("monitoring_board")[0].metadata
    return {k: v.value for k, v in metadata.items()}


def test_board_renders_checks_never_run_and_runs_failed_midway_with_no_traffic(data_dir, land):
    defs = build_definitions()
    loop = defs.resolve_job_def("mlops_loop")
    with dg.DagsterInstance.ephemeral() as instance:
        # Nothing landed: the run fails at its first step, every check it planned never runs.
        assert not loop.execute_in_process(instance=instance, raise_on_error=False).success
        board = _board(defs, instance)
        assert "dataset_snapshot:snapshot_matches_content_id" in board["checks_not_run"]
        assert "model_version:eval_floor" in board["checks_not_run"]
        assert board["failing_checks"] == "none"
        assert board["served_predictions"] == 0 and board["champion"] == "none"
        page = Path(board["board_path"]).read_text()
        assert "not run" in page and "no traffic captured yet" in page
        assert board["verdict"] == ("WATCH — no champion for flights_delay yet: run the loop "
                                    "→ mlops-pipeline materialize")

        # A batch with a column of the wrong type: the snapshot is taken, a blocking data check
        # fails, and everything after it (training, gate, drift, promotion) never runs.
        files = land(months=(1,), sample=0.05)
        batch = pd.read_parquet(files[0])
        batch["distance"] = batch["distance"].astype(str) + " miles"
        batch.to_parquet(files[0], index=False)
        assert not loop.execute_in_process(instance=instance, raise_on_error=False).success
        board = _board(defs, instance)
        assert board["failing_checks"] != "none"
        assert "model_version:eval_floor" in board["checks_not_run"]
        assert "drift_report:input_drift" in board["checks_not_run"]
        page = Path(board["board_path"]).read_text()
        assert "class='bad'>failed" in page and "class='warn'>not run" in page
        # THE verdict names the batch, the column and the way out
        batch = files[0].name
        assert board["verdict"].startswith(f"ACT — retraining blocked by batch {batch}, column "
                                           "'distance' (dtypes) → mlops-pipeline batches quarantine "
                                           f"{batch} --reason"), board["verdict"]
