"""A multi-class dataset nobody tuned for goes through the whole loop and is served: statsmodels'
bundled `fair` data (no download), predicting the wife's occupation as a string class.

What it shows end to end: the loop trains, gates (accuracy, log_loss), registers and promotes a
6-class model whose classes are strings; drift compares the predicted class as a category; the
served answer names the class, its probability and every class's probability; feedback takes
the string label and the store keeps it as a string (and refuses a number, naming the field).
No time column: the split is the default stratified one.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlops_pipeline_tests.conftest import materialized

pytestmark = pytest.mark.slow

OCCUPATIONS = {1: "student", 2: "farming", 3: "white_collar", 4: "teacher", 5: "managerial",
               6: "professional"}
FEATURES = ["rate_marriage", "age", "yrs_married", "children", "religious", "educ",
            "occupation_husb", "affairs"]

CONFIG = """\
name: fair_occupation
task: classification
source: {{path: landing/fair/*.parquet, format: parquet}}
target: {{name: occupation}}
key_columns: [id]
features:
  numerical: [{features}]
contract: {contract}
model:
  seed: 7
  params: {{max_iter: 60, learning_rate: 0.1}}
gate:
  accuracy: {{floor: 0.3}}
  log_loss: {{tolerance: 0.05}}
checks:
  min_class_share: 0.001
"""


@pytest.fixture
def fair_spec(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import statsmodels.api as sm

    from mlops_pipeline.data.contract import infer_contract, write_contract
    from mlops_pipeline.spec import load_spec

    frame = sm.datasets.fair.load_pandas().data
    frame["occupation"] = frame["occupation"].astype(int).map(OCCUPATIONS)
    frame.insert(0, "id", np.arange(len(frame), dtype="int64"))
    landing = data_dir / "landing" / "fair"
    landing.mkdir(parents=True)
    frame.to_parquet(landing / "batch_001.parquet", index=False)
    config = tmp_path / "fair.yaml"
    config.write_text(CONFIG.format(features=", ".join(FEATURES), contract=tmp_path / "fair_contract.yaml"))
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(config))
    spec = load_spec(config)
    write_contract(infer_contract(frame, spec), spec.contract_path())
    return spec, frame, config


def test_a_string_multi_class_target_runs_the_loop_and_is_served(fair_spec, run_loop, data_dir, tmp_path):
    import mlflow

    from mlops_pipeline.deployment.tracking import MLflow
    from mlops_pipeline.monitoring.predictions import PredictionStore
    from mlops_pipeline.training.model import class_info
    from mlops_pipeline_tests.serving.conftest import BIN, free_port, start, stop, wait_http

    spec, frame, config = fair_spec
    result = run_loop()
    done = materialized(result)
    assert {"trained_model", "model_version", "champion_model", "drift_report"} <= done, done
    trained = result.output_for_node("trained_model")
    assert {"macro_f1", "accuracy", "log_loss", "roc_auc"} <= set(trained.metrics)
    assert trained.metrics["accuracy"] > 0.3

    registry = MLflow()
    champion = registry.version_by_alias(spec.name, "champion")
    assert champion is not None
    registry.configure()
    model = mlflow.sklearn.load_model(f"models:/{spec.name}/{champion.version}")
    info = class_info(model)
    assert set(info.labels) == set(OCCUPATIONS.values()) and info.positive is None

    port = free_port()
    store_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    env = {**os.environ, "MLOPS_DATA_DIR": str(data_dir), "MLOPS_DATASET_CONFIG": str(config),
           "MLOPS_SERVE_STATE_FILE": str(tmp_path / "server.json")}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path / "serve.log"
    proc = start([str(BIN / "mlops-pipeline"), "serve", "--port", str(port), "--predictions-url",
                  store_url], env, log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/ready", proc, log)
        assert httpx.get(f"{url}/health", timeout=30).json()["champion"]["compiled"] is True
        rows = frame.head(5)
        records = [{c: float(r[c]) for c in FEATURES} | {"id": int(r["id"])} for _, r in rows.iterrows()]
        answer = httpx.post(f"{url}/predict", json={"records": records}, timeout=30)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        for p in predictions:
            assert p["prediction"] in OCCUPATIONS.values()
            assert set(p["probabilities"]) == set(OCCUPATIONS.values())
            assert sum(p["probabilities"].values()) == pytest.approx(1.0)
            assert p["probability"] == pytest.approx(max(p["probabilities"].values()))
            assert p["probabilities"][p["prediction"]] == pytest.approx(p["probability"])
        expected = model.predict(rows[FEATURES])
        assert [p["prediction"] for p in predictions] == list(expected)
        # the compiled model's class probabilities are the pipeline's, bit for bit
        classes = list(model.classes_)
        served = [[p["probabilities"][c] for c in classes] for p in predictions]
        assert np.array_equal(np.array(served), model.predict_proba(rows[FEATURES]))

        rid = predictions[0]["request_id"]
        ok = httpx.post(f"{url}/feedback", json={"request_id": rid, "label": "teacher"}, timeout=30)
        assert ok.status_code == 200, ok.text
        wrong = httpx.post(f"{url}/feedback", json={"request_id": rid, "label": 4}, timeout=30)
        assert wrong.status_code == 422 and "label" in wrong.text
        unknown = httpx.post(f"{url}/feedback", json={"request_id": rid, "label": "maybe"}, timeout=30)
        assert unknown.status_code == 422, unknown.text
        assert "'maybe' is not a class of" in unknown.text and "'teacher'" in unknown.text
    finally:
        stop(proc)
    store = PredictionStore(store_url)
    try:
        captured = store.get(rid, probabilities=True).iloc[0]
    finally:
        store.close()
    assert captured["label"] == "teacher" and captured["prediction"] == predictions[0]["prediction"]
    assert captured["probabilities"] == pytest.approx(predictions[0]["probabilities"])
