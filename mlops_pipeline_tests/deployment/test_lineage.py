"""Lineage pieces on a real (SQLite) MLflow store: the drift reports a training's Dagster run
logged are found by that run id, and only those."""

from __future__ import annotations

import pytest


def test_drift_reports_of_the_training_run_are_found_by_its_dagster_run_id(tmp_path):
    from mlflow import MlflowClient

    from mlops_pipeline.deployment.lineage import drift_runs

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("lineage", artifact_location=str(tmp_path / "artifacts"))
    report = tmp_path / "drift_flights_delay_v1_new.html"
    report.write_text("<html>report</html>")
    for dagster_run, share in (("run-a", 0.25), ("run-b", 0.5)):
        run = client.create_run(experiment, run_name=f"drift-{dagster_run}",
                                tags={"kind": "drift_report", "dagster.run_id": dagster_run,
                                      "champion_version": "1", "current": "new"})
        client.log_metric(run.info.run_id, "drift_share", share)
        client.log_artifact(run.info.run_id, str(report))
        client.set_terminated(run.info.run_id)
    # the training run itself: same Dagster run, not a drift report
    client.set_terminated(client.create_run(experiment, tags={"dagster.run_id": "run-a"}).info.run_id)
    found = drift_runs(client, experiment, "run-a")
    assert [(d["name"], d["drift_share"], d["champion_version"]) for d in found] == [
        ("drift-run-a", pytest.approx(0.25), "1")]
    assert found[0]["reports"][0].endswith("/artifacts/drift_flights_delay_v1_new.html")
    assert drift_runs(client, experiment, None) == []
