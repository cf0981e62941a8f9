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


def test_filter_values_are_quoted_or_refused():
    from mlops_pipeline.deployment.filters import FilterValueError, all_of, equals, quote

    assert quote("flights_delay") == "'flights_delay'"
    assert quote("o'brien") == '"o\'brien"'
    assert equals("tags.`dagster.run_id`", "run-a") == "tags.`dagster.run_id` = 'run-a'"
    assert all_of(equals("name", "a"), equals("tags.kind", "b")) == "name = 'a' and tags.kind = 'b'"
    for bad in ("", "a'\"b", "a\\", "a\nb", "x\x00"):
        with pytest.raises(FilterValueError):
            quote(bad)
    with pytest.raises(FilterValueError):
        equals("name = 'x' or name", "y")


def test_a_model_name_cannot_rewrite_the_search_for_a_snapshots_versions(tmp_path):
    """`explain --snapshot ID --model NAME`: NAME is one literal. A quote in it neither breaks the
    search (a name with a quote is found) nor adds a clause (a hostile name matches nothing)."""
    from mlflow import MlflowClient

    from mlops_pipeline.deployment.filters import equals

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # The registry named too: a loop run earlier in the session set MLflow's process-wide one.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in ("o'brien", "flights_delay"):
        client.create_registered_model(name)
        client.create_model_version(name, source=str(tmp_path / "model"), tags={"snapshot_id": "abc"})
    assert [mv.name for mv in client.search_model_versions(equals("name", "o'brien"))] == ["o'brien"]
    hostile = "nothing' and tags.snapshot_id = 'abc"  # the old f-string made this a second clause
    assert client.search_model_versions(f"name = '{hostile}'") == []  # (MLflow: no name matched)
    assert client.search_model_versions(equals("name", hostile)) == []
    hostile = "flights_delay' and name != 'x"
    assert len(client.search_model_versions(f"name = '{hostile}'")) == 1  # injected clause ran
    assert client.search_model_versions(equals("name", hostile)) == []


def test_explain_refuses_a_model_name_it_cannot_search_for_in_one_line(tmp_path, monkeypatch, capsys):
    from mlops_pipeline.cli import main

    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    (tmp_path / "mlflow.db").touch()  # a registry is there (explain refuses to read a missing one)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MLOPS_PREDICTIONS_URL", raising=False)
    assert main(["explain", "--snapshot", "abc", "--model", "a'\"b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
