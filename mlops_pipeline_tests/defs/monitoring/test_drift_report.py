"""`drift_report` on a first run: with no champion yet it compares the holdout with the training
split (scored by the candidate) and says so, so the first `up` already ends with a drift report."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import mlflow
import pytest

from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.deployment.tags import CHALLENGER, CHAMPION

pytestmark = pytest.mark.slow


def test_with_no_champion_the_report_compares_the_holdout_with_the_training_split(
    trained_flights: Path,
):
    # The shared loop as it stood before its first promotion: v1 is the candidate, no champion.
    client = mlflow.MlflowClient()
    client.delete_registered_model_alias("flights_delay", CHAMPION)
    client.set_registered_model_alias("flights_delay", CHALLENGER, "1")
    job = build_definitions().resolve_job_def("mlops_loop").get_subset(
        asset_selection={dg.AssetKey("drift_report")})

    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)

    assert result.success
    drift = result.asset_materializations_for_node("drift_report")[0].metadata
    compared = drift["compared"].value
    assert compared.startswith("no champion yet: the holdout (the newest period, from 2013-03")
    assert "against the training split of snapshot" in compared and "scored by candidate v1" in compared
    assert drift["reference"].value.startswith("candidate v1 training split")
    report = Path(drift["report_path"].value)
    assert report.name == "drift_flights_delay_v1_holdout_vs_train.html" and report.stat().st_size > 10_000
    assert 0 < drift["current_rows"].value < drift["reference_rows"].value
    assert {r.data["column"] for r in drift["columns"].value.records} >= {"temp", "prediction"}
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["input_drift"].severity == dg.AssetCheckSeverity.WARN  # no champion to protect
    assert "of input columns drifted" in checks["input_drift"].description
    # Marked as a first run's comparison: the drift sensor never retrains on it (test_automation).
    for name in ("input_drift", "prediction_drift"):
        assert checks[name].metadata["first_run"].value is True
        assert "never triggers retraining" in checks[name].description
