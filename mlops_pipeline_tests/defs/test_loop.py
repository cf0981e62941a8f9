"""The whole loop as a user runs it: snapshot -> features -> model -> registry -> drift report.

Each test materializes the real Dagster job in-process against a temporary data dir with a SQLite
MLflow, on a seeded ~12% sample of the real flights data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_pipeline.data import tables
from mlops_pipeline.deployment.tags import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline_tests.conftest import check_results, materialized

pytestmark = pytest.mark.slow

LOOP = {
    "dataset_snapshot", "training_features", "trained_model", "model_version", "champion_model",
    "drift_report",
}
SHUFFLED = {"ops": {"trained_model": {"config": {"shuffle_labels": True}}}}


def _registry() -> tuple[MLflow, mlflow.MlflowClient]:
    res = MLflow()
    return res, res.client()


def _snapshot_files(data_dir: Path) -> dict[str, tuple[float, bytes]]:
    return {p.name: (p.stat().st_mtime, p.read_bytes()) for p in (data_dir / "snapshots").glob("*")}


def test_whole_loop_registers_a_gated_champion_with_a_full_manifest(data_dir, land, run_loop, monkeypatch):
    land()
    result = run_loop()

    assert result.success
    assert materialized(result) == LOOP
    checks = check_results(result)
    blocking = {"snapshot_matches_content_id", "contract_schema", "null_rates", "min_rows",
                "unique_keys", "eval_floor", "no_regression"}
    assert blocking <= set(checks)
    assert all(checks[name].passed for name in blocking), {
        n: c.description for n, c in checks.items() if not c.passed
    }
    assert {"input_drift", "prediction_drift"} <= set(checks)

    res, client = _registry()
    champion = res.version_by_alias("flights_delay", CHAMPION)
    assert champion is not None and champion.version == 1
    assert res.version_by_alias("flights_delay", CHALLENGER) is None  # promoted, no longer challenger

    snapshot_id = result.output_for_node("dataset_snapshot").id
    tags = champion.tags
    assert tags["snapshot_id"] == snapshot_id
    assert tags["gate.status"] == "passed"
    # The version keeps the tags it is searched by; the manifest's flat tags stay on the run.
    for key in ["git_sha", "run_id", "dagster_run_id", "gate.champion_version", "holdout_roc_auc"]:
        assert tags.get(key), f"model version lacks tag {key}"
    assert not [k for k in tags if k.startswith("manifest.")]
    assert tags["dagster_run_id"] == result.run_id
    assert champion.description.startswith("# flights_delay v1")  # the model card

    run = client.get_run(champion.run_id)
    run_tags = run.data.tags
    assert run_tags["manifest.dataset_snapshot_id"] == snapshot_id
    for key in ["manifest.git_sha", "manifest.git_dirty", "manifest.uv_lock_sha256", "manifest.python",
                "manifest.dagster_run_id", "manifest.seed.model", "manifest.config_fingerprint",
                "manifest.pkg.scikit-learn", "manifest.pkg.mlflow"]:
        assert run_tags.get(key), f"training run lacks tag {key}"
    assert run_tags["manifest.dagster_run_id"] == result.run_id
    assert run.data.metrics["holdout_roc_auc"] > 0.6
    assert {"holdout_log_loss", "holdout_brier", "holdout_f1"} <= set(run.data.metrics)
    manifest_path = mlflow.artifacts.download_artifacts(
        run_id=champion.run_id, artifact_path="manifest.yaml", tracking_uri=res.resolved_tracking_uri
    )
    manifest = yaml.safe_load(Path(manifest_path).read_text())
    assert manifest["dataset_snapshot_id"] == snapshot_id
    assert manifest["seeds"]["model"] == 42
    assert manifest["config"]["dataset"]["name"] == "flights_delay"
    assert manifest["dagster_run_id"] == result.run_id
    assert len(manifest["uv_lock_sha256"]) == 64
    assert manifest["packages"]["dagster"]

    # The registered model is self-contained: it loads by alias and scores raw contract columns.
    model = mlflow.sklearn.load_model("models:/flights_delay@champion")
    features = pd.read_parquet(result.output_for_node("training_features").location)
    proba = model.predict_proba(features.head(20)[list(model.feature_names_in_)])[:, 1]
    assert ((proba > 0) & (proba < 1)).all()
    pyfunc = mlflow.pyfunc.load_model("models:/flights_delay@champion")
    assert pyfunc.metadata.signature is not None and pyfunc.metadata.saved_input_example_info
    rows = features.head(20)[list(model.feature_names_in_)]
    np.testing.assert_array_equal(pyfunc.predict(rows), model.predict(rows))
    _assert_requirements_are_what_the_model_imports(monkeypatch)

    # Drift ran before promotion, with no champion yet: the holdout against the training split,
    # scored by the candidate, and it says so; the check only warns (no champion to protect).
    drift = result.asset_materializations_for_node("drift_report")[0].metadata
    assert drift["compared"].value.startswith("no champion yet: the holdout (the newest period")
    assert Path(drift["report_path"].value).exists()
    assert checks["input_drift"].severity.value == "WARN"
    # Promotion is the last step of the run: nothing after the alias move can fail the run.
    steps = [e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"]
    assert steps[-1] == "champion_model" and steps.index("drift_report") < steps.index("champion_model")
    # The model's stored drift reference: its training split, scored by itself.
    stored = tags["drift_reference"]
    assert stored == run.data.tags["drift_reference"]
    reference = pd.read_parquet(stored)
    train = features[features["_split"] == "train"]
    assert len(reference) == len(train)
    np.testing.assert_allclose(reference["prediction"], model.predict_proba(
        train[list(model.feature_names_in_)])[:, 1])


def _assert_requirements_are_what_the_model_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """The logged requirements are pinned to this environment and cover every package MLflow's own
    import-capturing inference (a subprocess that loads the model) finds, apart from the incidental
    imports `mlops_pipeline.training.model.RUNTIME_PACKAGES` documents."""
    from importlib import metadata

    from mlflow.models import infer_pip_requirements
    from packaging.requirements import Requirement

    uri = "models:/flights_delay@champion"
    lines = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text().split()
    pins = {Requirement(line).name: str(Requirement(line).specifier) for line in lines}
    assert set(pins) == {"mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy"}
    assert all(spec == f"=={metadata.version(name)}" for name, spec in pins.items()), pins

    monkeypatch.setenv("MLFLOW_UV_AUTO_DETECT", "false")  # the capture, not the uv lockfile export
    inferred = {Requirement(r).name for r in infer_pip_requirements(
        mlflow.artifacts.download_artifacts(uri), "sklearn")}
    assert {"scikit-learn", "numpy", "pandas", "scipy", "skops"} <= inferred
    assert inferred - set(pins) <= {"pytest", "rich", "psutil"}, inferred


def test_worse_model_is_blocked_and_champion_does_not_move(data_dir, land, run_loop):
    land()
    assert run_loop().success
    res, client = _registry()
    snapshots_before = _snapshot_files(data_dir)

    result = run_loop(run_config=SHUFFLED)

    assert not result.success
    checks = check_results(result)
    assert not checks["eval_floor"].passed and "roc_auc" in checks["eval_floor"].description
    assert not checks["no_regression"].passed
    assert "champion v1" in checks["no_regression"].description
    assert "champion_model" not in materialized(result)
    assert "drift_report" not in materialized(result)
    # The rejected candidate is kept for inspection, marked as failed; the champion did not move.
    assert res.version_by_alias("flights_delay", CHAMPION).version == 1
    rejected = res.version_by_alias("flights_delay", CHALLENGER)
    assert rejected.version == 2 and rejected.tags["gate.status"] == "failed"
    assert "roc_auc" in rejected.tags["gate.reasons"]
    assert res.version_by_alias("flights_delay", PREVIOUS_CHAMPION) is None
    # Nothing else is lost: same snapshot bytes, the champion still loads.
    assert _snapshot_files(data_dir) == snapshots_before
    assert mlflow.sklearn.load_model("models:/flights_delay@champion") is not None
    assert len(client.search_model_versions("name='flights_delay'")) == 2


def test_retrain_on_new_data_promotes_and_keeps_previous_champion(data_dir, land, run_loop):
    land(months=(1, 2))
    assert run_loop().success
    res, client = _registry()
    v1 = res.version_by_alias("flights_delay", CHAMPION)
    land(months=(3,))
    result = run_loop()
    assert result.success, {n: c.description for n, c in check_results(result).items()}
    assert check_results(result)["no_regression"].passed
    assert "champion v1" in check_results(result)["no_regression"].description
    assert res.version_by_alias("flights_delay", CHAMPION).version == 2
    # Per segment too (the flights config's carriers, origins and distance bands): a table of
    # every segment in the check's metadata, the same table in MLflow on the candidate's run.
    segments = check_results(result)["segment_regression"]
    assert segments.passed and "no segment regressed" in segments.description
    table = {r.data["segment"]: r.data for r in segments.metadata["segments"].records}
    assert {"origin=JFK", "origin=LGA", "origin=EWR"} <= set(table)
    assert all(r["verdict"] in ("ok", "too few rows") for r in table.values())
    run_id = res.version_by_alias("flights_delay", CHAMPION).run_id
    logged = json.loads(Path(client.download_artifacts(run_id, "segments/gate.json",
                                                       str(data_dir))).read_text())
    assert {row[logged["columns"].index("segment")] for row in logged["data"]} == set(table)
    assert res.version_by_alias("flights_delay", PREVIOUS_CHAMPION).version == 1
    assert len(list((data_dir / "snapshots").glob("*.parquet"))) == 2

    # Before promotion, drift compared the new rows (March: the rows v1's snapshot lacked) with v1's
    # training data, through the reference v1's training step stored; report on disk and in MLflow.
    drift = result.asset_materializations_for_node("drift_report")[0].metadata
    features = pd.read_parquet(result.output_for_node("training_features").location)
    march = int((pd.to_datetime(features["time_hour"]).dt.month == 3).sum())
    assert drift["current_rows"].value == march > 0
    assert drift["current_from"].value.startswith("2013-03")
    assert drift["reference_source"].value == v1.tags["drift_reference"]
    assert drift["reference_rows"].value == len(pd.read_parquet(v1.tags["drift_reference"]))
    assert "champion v1" in drift["reference"].value
    assert Path(drift["report_path"].value).stat().st_size > 100_000
    assert 0.0 <= drift["drift_share"].value <= 1.0
    assert drift["mlflow_run_id"].value in {
        r.info.run_id for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
    }
    # Nothing was flagged, so the gate compared on the candidate's whole holdout.
    candidate = result.asset_materializations_for_node("model_version")[0].metadata
    holdout = int((features["_split"] == "holdout").sum())
    assert candidate["compared_rows"].value == holdout
    assert f"{holdout} of {holdout} holdout rows compared" in candidate["comparison_holdout"].value


def _corrupt(data_dir: Path, change) -> None:
    batch = data_dir / "landing" / "flights" / "flights_2013_03.parquet"
    df = pd.read_parquet(batch)
    change(df).to_parquet(batch, index=False)


def _wrong_dtype(df: pd.DataFrame) -> pd.DataFrame:
    df["distance"] = df["distance"].astype(str) + " miles"
    return df


def _missing_column(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["dest"])


def _null_spike(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[df.sample(frac=0.9, random_state=0).index, "temp"] = None
    return df


@pytest.mark.parametrize(
    ("change", "check", "column"),
    [
        # Each landed batch is checked on its own first (naming the file), so these stop at the
        # snapshot; the overall contract checks on training_features are tested in test_contract.
        (_wrong_dtype, "batch_dtypes", "distance"),
        (_missing_column, "batch_columns", "dest"),
        (_null_spike, "batch_null_rates", "temp"),
    ],
    ids=["wrong-dtype", "missing-column", "null-spike"],
)
def test_corrupted_data_is_stopped_before_training(data_dir, land, run_loop, change, check, column):
    land()
    _corrupt(data_dir, change)
    if change is _missing_column:  # every batch must agree on columns, or landing itself refuses
        for f in (data_dir / "landing" / "flights").glob("*.parquet"):
            pd.read_parquet(f).drop(columns=["dest"], errors="ignore").to_parquet(f, index=False)

    result = run_loop()

    assert not result.success
    failed = check_results(result)[check]
    assert not failed.passed
    assert column in failed.description and "flights_2013_03.parquet" in failed.description
    cases = failed.metadata["findings"].records
    assert any(column in r.data["column"] for r in cases)
    assert materialized(result) == {"dataset_snapshot"}
    res, client = _registry()
    assert client.search_registered_models() == []
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def _drift_run(extra_config: dict | None = None):
    """Snapshot, features and the drift report with its own checks only (the data checks are
    covered elsewhere): what drift says about whatever has landed, without training."""
    import dagster as dg

    from mlops_pipeline.defs.definitions import build_definitions

    job = build_definitions().resolve_job_def("mlops_loop").get_subset(
        asset_selection={dg.AssetKey(a) for a in ("dataset_snapshot", "training_features", "drift_report")},
        asset_check_selection={dg.AssetCheckKey(dg.AssetKey("drift_report"), n)
                               for n in ("input_drift", "prediction_drift")},
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    return result, result.asset_materializations_for_node("drift_report")[0].metadata


def test_drift_compares_only_data_new_since_the_champion_and_says_when_there_is_none(
    data_dir, land, run_loop, monkeypatch
):
    land()
    assert run_loop().success

    # Every landed row was in the champion's training snapshot: nothing new, both checks pass.
    result, same = _drift_run()
    assert same["status"].value.startswith("nothing new to compare")
    assert "report_path" not in same and same["current_rows"].value == 0
    assert all(c.passed and c.description == same["status"].value
               for c in result.get_asset_check_evaluations())

    land(months=(4,))
    _, april = _drift_run()
    assert april["current_from"].value.startswith("2013-04")
    for f in (data_dir / "landing" / "flights").glob("*_04.parquet"):
        f.unlink()
    land(months=(12,))
    result, december = _drift_run()
    assert december["current_from"].value.startswith("2013-12")
    assert december["drift_share"].value > april["drift_share"].value
    assert Path(december["report_path"].value).exists()
    assert Path(december["report_path"].value) != Path(april["report_path"].value)
    drift_check = check_results(result)["input_drift"]
    assert drift_check.severity.value == "WARN"  # warns by default: the run still succeeded

    # The new rows are streamed a chunk at a time: in chunks of 500 rows, the same scores, rows
    # and report name as in one chunk.
    with monkeypatch.context() as patched:
        patched.setattr(tables, "CHUNK_ROWS", 500)
        _, chunked = _drift_run()
    assert december["current_rows"].value > 3 * 500
    for key in ("drift_share", "current_rows", "current", "current_from", "current_to", "report_path"):
        assert chunked[key].value == december[key].value, key
    assert chunked["columns"].value.records == december["columns"].value.records

    # A champion whose stored reference is gone (or one registered before references were
    # stored) gets it rebuilt from its snapshot: the same reference, so the same scores.
    Path(december["reference_source"].value).unlink()
    _, rebuilt = _drift_run()
    assert rebuilt["reference_source"].value.startswith("rebuilt from snapshot")
    assert rebuilt["drift_share"].value == december["drift_share"].value
    assert rebuilt["columns"].value.records == december["columns"].value.records

    # A batch lacking a nullable column (issue 14 crashed here with KeyError: ['visib'] after the
    # alias had moved): drift reads the rows the run prepared, where that column is null for the
    # batch's rows, as the contract allows; it cannot fail on what the data checks admit.
    may = land(months=(5,))[0]
    pd.read_parquet(may).drop(columns=["visib"]).to_parquet(may, index=False)
    _, lacking = _drift_run()
    assert lacking["current_rows"].value > december["current_rows"].value
    assert "visib" in {r.data["column"] for r in lacking["columns"].value.records}


def test_blocking_drift_stops_promotion_and_keeps_the_champion(data_dir, land, run_loop, tmp_path,
                                                               monkeypatch):
    land()
    assert run_loop().success
    config = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    config["drift"].update(block_promotion=True, max_drift_share=0.0)
    path = tmp_path / "flights_blocking_drift.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(path))
    land(months=(12,))
    snapshots_before = _snapshot_files(data_dir)

    result = run_loop()

    assert not result.success
    checks = check_results(result)
    assert checks["eval_floor"].passed  # the candidate itself was fine ...
    drift = checks["input_drift"]  # ... but December's inputs drifted from what v1 learned
    assert not drift.passed and drift.severity.value == "ERROR"
    assert "champion_model" not in materialized(result)
    assert {"model_version", "drift_report"} <= materialized(result)
    res, _ = _registry()
    assert res.version_by_alias("flights_delay", CHAMPION).version == 1
    assert res.version_by_alias("flights_delay", CHALLENGER).version == 2
    assert res.version_by_alias("flights_delay", PREVIOUS_CHAMPION) is None
    assert set(snapshots_before) <= set(_snapshot_files(data_dir))


def test_regression_config_runs_end_to_end(data_dir, land, run_loop, monkeypatch):
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(PROJECT_ROOT / "data/configs/flights_regression.yaml"))
    land()
    result = run_loop()
    assert result.success, {n: c.description for n, c in check_results(result).items()}
    assert materialized(result) == LOOP
    res, client = _registry()
    champion = res.version_by_alias("flights_arr_delay", CHAMPION)
    assert champion is not None
    metrics = client.get_run(champion.run_id).data.metrics
    assert {"holdout_mae", "holdout_rmse", "holdout_r2"} <= set(metrics)
    assert metrics["holdout_r2"] > 0.02
    model = mlflow.sklearn.load_model("models:/flights_arr_delay@champion")
    assert model.steps[-1][1].__class__.__name__ == "HistGradientBoostingRegressor"
    assert os.environ["MLOPS_DATASET_CONFIG"].endswith("flights_regression.yaml")
