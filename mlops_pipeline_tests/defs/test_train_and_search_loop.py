"""Any model (issue 26 items 2, 3): the loop on `fair` with the team's own training function
(`model.train`, the worked example in examples/) and with a hyper-parameter search (`model.search`).

The example function's model is trained, gated and registered by the Dagster loop, served by the
real server (its answers must be the registered model's, thresholded by the stored threshold) and
reproduced with identical predictions. A 5-trial search leaves five nested MLflow runs under the
training run, its chosen parameters in the run manifest and the run's params, and `reproduce`
rebuilds the version from those parameters without searching again (no new nested run).
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from mlops_pipeline_tests.cli.conftest import FAIR_CONFIG
from mlops_pipeline_tests.conftest import materialized

pytestmark = pytest.mark.slow


def _dataset(table: str, model: dict, data_dir: Path, tmp_path: Path):
    """Land `fair`, write its config with `model`, infer its contract; returns (spec, frame, config)."""
    import statsmodels.api as sm

    from mlops_pipeline.data.contract import infer_contract, write_contract
    from mlops_pipeline.spec import load_spec

    assert table == "fair"
    frame = sm.datasets.fair.load_pandas().data.sample(frac=1.0, random_state=0).reset_index(drop=True)
    raw = {**FAIR_CONFIG, "source": {"path": "landing/fair/*.parquet", "format": "parquet"},
           "contract": str(tmp_path / "fair_contract.yaml"), "model": {"seed": 7, **model}}
    landing = data_dir / "landing" / "fair"
    landing.mkdir(parents=True)
    frame.to_parquet(landing / "batch_001.parquet", index=False)
    config = tmp_path / "fair.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = load_spec(config)
    write_contract(infer_contract(frame, spec), spec.contract_path())
    return spec, frame, config


def _champion(spec):
    from mlops_pipeline.deployment.tags import GATE_STATUS_TAG
    from mlops_pipeline.deployment.tracking import MLflow

    registry = MLflow()
    champion = registry.version_by_alias(spec.name, "champion")
    assert champion is not None and champion.tags.get(GATE_STATUS_TAG) == "passed", champion
    return registry, champion


def _reproduce(capsys, spec, champion) -> None:
    from mlops_pipeline.cli import main

    capsys.readouterr()
    assert main(["reproduce", "champion"]) == 0
    out = capsys.readouterr().out
    assert f"REPRODUCED {spec.name} v{champion.version}" in out and "bit-identical" in out, out


def test_the_example_train_function_is_registered_gated_served_and_reproduced(
        data_dir, tmp_path, run_loop, monkeypatch, capsys):
    import mlflow

    from mlops_pipeline.training.estimators import final_estimator
    from mlops_pipeline.training.model import class_info
    from mlops_pipeline_tests.serving.conftest import BIN, free_port, start, stop, wait_http

    model_section = {"train": "examples.train_logistic:train", "params": {"C_grid": "0.1,1"},
                     "threshold": {"objective": "f1"}}
    spec, frame, config = _dataset("fair", model_section, data_dir, tmp_path)
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(config))
    result = run_loop()
    assert {"trained_model", "model_version", "champion_model"} <= materialized(result)

    registry, champion = _champion(spec)
    registry.configure()
    model = mlflow.sklearn.load_model(f"models:/{spec.name}/{champion.version}")
    assert type(final_estimator(model)).__name__ == "LogisticRegression"  # the function's model
    assert final_estimator(model).C in (0.1, 1.0)  # picked by the function from its C_grid
    params = mlflow.get_run(champion.run_id).data.params
    assert params["model.train"] == "examples.train_logistic:train"
    threshold = class_info(model).threshold
    assert threshold is not None and float(params["decision_threshold"]) == pytest.approx(threshold)

    features = list(spec.features.columns)
    rows = frame.head(200)
    records = [{c: float(v) for c, v in r.items()} for r in rows[features].to_dict("records")]
    port = free_port()
    env = {**os.environ, "MLOPS_DATA_DIR": str(data_dir), "MLOPS_DATASET_CONFIG": str(config),
           "MLOPS_SERVE_STATE_FILE": str(tmp_path / "server.json")}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path / "serve.log"
    proc = start([str(BIN / "mlops-pipeline"), "serve", "--port", str(port), "--predictions-url",
                  f"sqlite:///{tmp_path / 'predictions.db'}"], env, log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/ready", proc, log)
        answer = httpx.post(f"{url}/predict", json={"records": records}, timeout=60)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
    finally:
        stop(proc)
    probability = np.array([p["probability"] for p in predictions])
    np.testing.assert_allclose(probability, model.predict_proba(rows[features])[:, 1], rtol=1e-6)
    served = np.array([p["prediction"] for p in predictions], dtype="float64")
    np.testing.assert_array_equal(served, (probability >= threshold).astype(float))

    _reproduce(capsys, spec, champion)


def test_a_search_logs_nested_trials_records_its_choice_and_reproduce_does_not_search(
        data_dir, tmp_path, run_loop, monkeypatch, capsys):
    import mlflow

    from mlops_pipeline.training.estimators import final_estimator
    from mlops_pipeline.training.reproduce import read_manifest

    model_section = {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300},
                     "search": {"trials": 5, "space": {
                         "C": {"type": "float", "low": 0.001, "high": 10.0, "log": True},
                         "fit_intercept": {"type": "categorical", "choices": [True, False]}}}}
    spec, _, config = _dataset("fair", model_section, data_dir, tmp_path)
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(config))
    result = run_loop()
    assert {"trained_model", "model_version", "champion_model"} <= materialized(result)

    registry, champion = _champion(spec)
    client = registry.client()
    experiment = client.get_run(champion.run_id).info.experiment_id

    def nested(parent: str | None = None):
        where = f"tags.mlflow.parentRunId = '{parent}'" if parent else "tags.mlflow.parentRunId != ''"
        return client.search_runs([experiment], filter_string=where)

    trials = nested(champion.run_id)
    assert len(trials) == 5
    for trial in trials:
        assert set(trial.data.params) == {"C", "fit_intercept"}
        assert 0.4 < trial.data.metrics["validation_roc_auc"] <= 1.0  # the first gate metric
    best = max(trials, key=lambda r: r.data.metrics["validation_roc_auc"])

    manifest = read_manifest(registry, champion.run_id)
    chosen = manifest["search"]["params"]
    assert manifest["search"]["metric"] == "roc_auc" and manifest["search"]["trials"] == 5
    assert manifest["search"]["value"] == pytest.approx(best.data.metrics["validation_roc_auc"])
    assert str(chosen["C"]) == best.data.params["C"]
    params = mlflow.get_run(champion.run_id).data.params
    assert params["model.C"] == str(chosen["C"])
    registry.configure()
    model = mlflow.sklearn.load_model(f"models:/{spec.name}/{champion.version}")
    assert pytest.approx(chosen["C"]) == final_estimator(model).C  # refitted with the choice
    assert final_estimator(model).fit_intercept == chosen["fit_intercept"]

    before = len(nested())
    _reproduce(capsys, spec, champion)
    assert len(nested()) == before  # reproduce fitted the recorded parameters: no search
