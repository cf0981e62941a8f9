"""Any registered MLflow model, served by real `mlops-pipeline serve` processes (issue 26 item 5).

Models registered outside the loop, as from someone's notebook, under names of their own in the
session's MLflow server: a `PythonModel` wrapping a fitted sklearn pipeline (with `predict_proba`
and `classes_`, so class probabilities) and an `xgboost`-flavor classifier. Each is served with the
dataset config as its contract and without one (the model's signature is the contract), answering
/predict and MLflow's /invocations, validated and captured. A version that cannot load is never
swapped in: the server keeps answering with the one it has, /health says why in one line and
`mlops_model_load_failures_total` counts it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from examples.train_pyfunc import SklearnPythonModel
from mlops_pipeline.monitoring.predictions import PredictionStore
from mlops_pipeline_tests.serving.conftest import (
    BIN,
    TOKEN,
    Stack,
    free_port,
    records,
    start,
    start_server,
    stop,
    wait_http,
)

pytestmark = pytest.mark.slow

CONFIG = str(Path(__file__).resolve().parents[2] / "data" / "configs" / "flights.yaml")
NUMERIC = ["distance", "hour", "month", "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust",
           "precip", "pressure", "visib"]


class Broken(mlflow.pyfunc.PythonModel):
    """A version that registers fine and cannot be loaded."""

    def load_context(self, context: Any) -> None:
        raise RuntimeError("broken on purpose: this version cannot load")

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return np.zeros(len(model_input))


@dataclass
class Models:
    sklearn: Any  # flights_delay v1, the estimator the pyfunc model wraps
    xgb: Any
    experiment: str  # where the notebook's runs go


@pytest.fixture(scope="module")
def models(stack: Stack) -> Iterator[Models]:
    """Registered the way a notebook would: log_model with a signature and an input example."""
    import cloudpickle
    import xgboost
    from mlflow.models import infer_signature

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the server cannot import tests
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", stack.tracking_uri)
        mp.setenv("MLFLOW_REGISTRY_URI", stack.tracking_uri)
        # An earlier loop run in this process may have pointed the `mlflow` module's own globals
        # at its registry (MLflow.configure): point them at the stack's, as a notebook would.
        mlflow.set_tracking_uri(stack.tracking_uri)
        mlflow.set_registry_uri(stack.tracking_uri)
        client = mlflow.MlflowClient(tracking_uri=stack.tracking_uri, registry_uri=stack.tracking_uri)
        # No active experiment is set: other tests in the session use others.
        experiment = client.create_experiment("notebook")
        sk = mlflow.sklearn.load_model("models:/flights_delay/1")
        X = stack.holdout
        signature = infer_signature(X, sk.predict(X))
        with mlflow.start_run(experiment_id=experiment):
            mlflow.pyfunc.log_model(name="model", python_model=SklearnPythonModel(sk), signature=signature,
                                    input_example=X.head(5), registered_model_name="notebook_pyfunc")
        Xn = X[NUMERIC]
        xgb = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(Xn, sk.predict(X))
        with mlflow.start_run(experiment_id=experiment):
            mlflow.xgboost.log_model(xgb, name="model", signature=infer_signature(Xn, xgb.predict(Xn)),
                                     input_example=Xn.head(5), registered_model_name="notebook_xgb")
        with mlflow.start_run(experiment_id=experiment):  # v1 loads; v2 (registered by the test) does not
            mlflow.pyfunc.log_model(name="model", python_model=SklearnPythonModel(sk), signature=signature,
                                    input_example=X.head(5), registered_model_name="notebook_broken")
        for name in ("notebook_pyfunc", "notebook_xgb", "notebook_broken"):
            client.set_registered_model_alias(name, "champion", "1")
        yield Models(sk, xgb, experiment)
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _post(url: str, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=30)


def _stored(predictions_url: str) -> pd.DataFrame:
    return PredictionStore(predictions_url).read_window()


def _mlflow_forms(rows: list[dict]) -> dict[str, dict]:
    columns = list(rows[0])
    return {
        "dataframe_split": {"dataframe_split": {"columns": columns,
                                                "data": [[r[c] for c in columns] for r in rows]}},
        "dataframe_records": {"dataframe_records": rows},
        "instances": {"instances": rows},
        "inputs": {"inputs": {c: [r[c] for r in rows] for c in columns}},
    }


def _check_invocations(url: str, rows: list[dict], expected: list[Any]) -> None:
    for form, body in _mlflow_forms(rows).items():
        r = _post(url, "/invocations", body)
        assert r.status_code == 200, (form, r.text)
        assert r.json() == {"predictions": expected}, form
        assert r.headers["x-mlops-batch-id"] and r.headers["x-mlops-role"] == "champion"


def test_a_pyfunc_model_is_served_with_the_dataset_config(stack, models):
    srv = start_server(stack, "any_pyfunc_config", "--model-name", "notebook_pyfunc", "--config", CONFIG)
    try:
        health = httpx.get(f"{srv.url}/health").json()
        assert health["champion"]["flavor"] == "python_function" and health["model_load_error"] is None
        rows = records(stack, 6)
        r = _post(srv.url, "/predict", {"records": rows})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["model_name"] == "notebook_pyfunc" and answer["model_version"] == "1"
        expected = models.sklearn.predict_proba(stack.holdout.head(6))[:, 1]
        np.testing.assert_allclose([p["probability"] for p in answer["predictions"]], expected, rtol=1e-9)
        labels = [p["prediction"] for p in answer["predictions"]]
        assert labels == models.sklearn.predict(stack.holdout.head(6)).tolist()
        _check_invocations(srv.url, rows, labels)
        # The dataset's contract guards /invocations as it guards /predict (a number for a carrier).
        bad = _post(srv.url, "/invocations", {"dataframe_records": [{**rows[0], "carrier": 5}]})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "carrier"
        stored = _stored(srv.predictions_url)
        assert len(stored) == 6 * 5 and set(stored["model_name"]) == {"notebook_pyfunc"}
    finally:
        stop(srv.proc)


def test_a_pyfunc_model_is_served_by_its_signature_without_a_config(stack, models):
    srv = start_server(stack, "any_pyfunc_signature", "--model-name", "notebook_pyfunc")
    try:
        rows = records(stack, 4, offset=10)
        r = _post(srv.url, "/predict", {"records": rows})
        assert r.status_code == 200, r.text
        answer = r.json()
        expected = models.sklearn.predict_proba(stack.holdout.iloc[10:14])[:, 1]
        np.testing.assert_allclose([p["probability"] for p in answer["predictions"]], expected, rtol=1e-9)
        _check_invocations(srv.url, rows, [p["prediction"] for p in answer["predictions"]])
        # The signature is the contract: a missing column and a wrong type are refused by name.
        missing = {k: v for k, v in rows[0].items() if k != "distance"}
        bad = _post(srv.url, "/predict", {"records": [missing, {**rows[1], "origin": 3}]})
        assert bad.status_code == 422
        assert {(e["record"], e["field"]) for e in bad.json()["errors"]} == {(0, "distance"), (1, "origin")}
        # Capture and feedback as for a model of the loop.
        stored = _stored(srv.predictions_url)
        assert len(stored) == 4 * 5
        rid = answer["predictions"][0]["request_id"]
        fb = httpx.post(f"{srv.url}/feedback", json={"request_id": rid, "label": 1},
                        headers={"Authorization": f"Bearer {TOKEN}"})
        assert fb.status_code == 200, fb.text
        openapi = httpx.get(f"{srv.url}/openapi.json").json()
        assert "distance" in json.dumps(openapi["paths"]["/predict"])
        # The Open Inference Protocol (v2): columnar tensors in, `predict` and `probability` out.
        tensors = {"id": "req-7", "inputs": [{"name": c, "shape": [len(rows)], "data": [r[c] for r in rows]}
                                             for c in rows[0]]}
        v2 = _post(srv.url, "/v2/models/notebook_pyfunc/infer", tensors)
        assert v2.status_code == 200, v2.text
        outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
        assert v2.json()["id"] == "req-7" and v2.json()["model_version"] == "1"
        assert outputs["predict"] == [p["prediction"] for p in answer["predictions"]]
        np.testing.assert_allclose(outputs["probability"], expected, rtol=1e-9)
        assert _post(srv.url, "/v2/models/other/infer", tensors).status_code == 404
        assert httpx.get(f"{srv.url}/v2/health/ready").json() == {"ready": True}
        meta = httpx.get(f"{srv.url}/v2/models/notebook_pyfunc").json()
        assert meta["platform"] == "mlflow-python_function"
        assert [i["name"] for i in meta["inputs"]] == list(rows[0])
        assert len(_stored(srv.predictions_url)) == 4 * 6
    finally:
        stop(srv.proc)


def test_an_xgboost_model_is_served_with_and_without_a_config_and_answers_as_mlflow_does(stack, models):
    rows = records(stack, 5, offset=20)
    expected = models.xgb.predict_proba(stack.holdout.iloc[20:25][NUMERIC])[:, 1]
    port = free_port()
    log = stack.root / "mlflow_models_serve.log"
    reference = start([str(BIN / "mlflow"), "models", "serve", "-m", "models:/notebook_xgb/1",
                       "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], stack.env, log)
    try:
        for args in (("--config", CONFIG), ()):
            srv = start_server(stack, f"any_xgb{len(args)}", "--model-name", "notebook_xgb", *args)
            try:
                assert httpx.get(f"{srv.url}/health").json()["champion"]["flavor"] == "xgboost"
                send = rows if args else [{c: r[c] for c in NUMERIC} for r in rows]
                r = _post(srv.url, "/predict", {"records": send})
                assert r.status_code == 200, r.text
                answer = r.json()["predictions"]
                np.testing.assert_allclose([p["probability"] for p in answer], expected, rtol=1e-6)
                body = _mlflow_forms(send)["dataframe_split"]
                ours = _post(srv.url, "/invocations", body)
                wait_http(f"http://127.0.0.1:{port}/ping", reference, log, timeout=120)
                theirs = _post(f"http://127.0.0.1:{port}", "/invocations",
                               _mlflow_forms([{c: r[c] for c in NUMERIC} for r in rows])["dataframe_split"])
                assert ours.status_code == theirs.status_code == 200, (ours.text, theirs.text)
                assert ours.json() == theirs.json()
                assert len(_stored(srv.predictions_url)) == 10
            finally:
                stop(srv.proc)
    finally:
        stop(reference)


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_version_that_cannot_load_is_never_swapped_in(stack, models):
    srv = start_server(stack, "any_broken", "--model-name", "notebook_broken", "--poll-seconds", "0.5")
    client = mlflow.MlflowClient(tracking_uri=stack.tracking_uri, registry_uri=stack.tracking_uri)
    failures = 'mlops_model_load_failures_total{slot="champion"}'
    try:
        assert _metric(srv.url, failures) == 0
        with mlflow.start_run(experiment_id=models.experiment):  # pickled by value (`models`)
            mlflow.pyfunc.log_model(name="model", python_model=Broken(),
                                    registered_model_name="notebook_broken")
        client.set_registered_model_alias("notebook_broken", "champion", "2")
        deadline = time.time() + 60
        while (health := httpx.get(f"{srv.url}/health").json())["model_load_error"] is None:
            assert time.time() < deadline, srv.log.read_text()[-3000:]
            time.sleep(0.2)
        line = health["model_load_error"]
        assert "\n" not in line and "champion v2 failed to load" in line and "broken on purpose" in line
        assert "still serving v1" in line
        assert health["status"] == "degraded" and health["model_version"] == "1"
        assert health["registry"]["reachable"] is True
        r = _post(srv.url, "/predict", {"records": records(stack, 2)})
        assert r.status_code == 200 and r.json()["model_version"] == "1"
        assert _metric(srv.url, failures) == 1
        time.sleep(2)  # polls keep coming; the failed version is not reloaded on each one
        assert _metric(srv.url, failures) == 1
        # An explicit reload tries it again: counted again, still not swapped in.
        reload = httpx.post(f"{srv.url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"},
                            timeout=60)
        assert reload.status_code == 200 and reload.json()["model_version"] == "1"
        assert _metric(srv.url, failures) == 2
        # The alias moves back: the complaint is gone.
        client.set_registered_model_alias("notebook_broken", "champion", "1")
        deadline = time.time() + 30
        while (health := httpx.get(f"{srv.url}/health").json())["model_load_error"] is not None:
            assert time.time() < deadline, health
            time.sleep(0.2)
        assert health["status"] == "ok" and health["model_version"] == "1"
    finally:
        stop(srv.proc)
