"""The parts of serving any MLflow model, without processes: the pyfunc face (probabilities when
the model underneath has them, its own columns and types), the signature as a contract, MLflow's
scoring formats, and the watcher never swapping in a version that fails to load. The real servers:
test_any_model.py."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops_pipeline.serving import loader
from mlops_pipeline.serving.errors import RequestError
from mlops_pipeline.serving.flavors import PyfuncModel, as_column
from mlops_pipeline.serving.invocations import invocations_answer, predict_body, to_records
from mlops_pipeline.serving.loader import LoadedModel, ModelWatcher
from mlops_pipeline.serving.signature import SignatureError, schema_from_signature


def _fitted() -> tuple[LogisticRegression, pd.DataFrame]:
    X = pd.DataFrame({"a": np.arange(40, dtype=np.int64), "b": np.linspace(0, 1, 40)})
    return LogisticRegression().fit(X, np.arange(40) >= 20), X


class _Pyfunc:
    """What `mlflow.pyfunc.load_model` returns, reduced to what serving calls."""

    def __init__(self, raw: Any = None, python_model: Any = None, predict: Any = None):
        self.raw, self.python_model, self._predict = raw, python_model, predict
        self.inputs: list[pd.DataFrame] = []

    def get_raw_model(self) -> Any:
        if self.raw is None:
            raise NotImplementedError
        return self.raw

    def unwrap_python_model(self) -> Any:
        if self.python_model is None:
            raise ValueError("not a PythonModel")
        return self.python_model

    def predict(self, X: pd.DataFrame) -> Any:
        self.inputs.append(X)
        return self._predict(X)


def test_a_raw_model_with_predict_proba_gives_class_probabilities_on_its_own_columns_and_types():
    sk, X = _fitted()
    wide = X.assign(extra="x").astype({"a": "float64"})[["extra", "b", "a"]]
    model = PyfuncModel(_Pyfunc(raw=sk), "xgboost", columns=["a", "b"], dtypes={"a": np.dtype("int64")})
    loaded = LoadedModel("m", "1", model, "classification", flavor="xgboost")
    scores = loaded.score(wide)
    np.testing.assert_allclose(scores.probabilities, sk.predict_proba(X))
    assert scores.prediction.tolist() == sk.predict(X).tolist()
    assert loaded.classes.labels == (False, True) and loaded.describe()["flavor"] == "xgboost"
    # A positive class and decision threshold saved on the model underneath are the served ones.
    sk.positive_class_, sk.decision_threshold_ = True, 0.9
    strict = LoadedModel("m", "2", PyfuncModel(_Pyfunc(raw=sk), "xgboost"), "classification")
    assert (strict.classes.positive, strict.classes.threshold) == (1, 0.9)
    assert strict.score(X).prediction.tolist() == (sk.predict_proba(X)[:, 1] >= 0.9).tolist()


def test_a_python_model_offers_probabilities_through_its_own_predict_proba():
    sk, X = _fitted()

    class Notebook:
        classes_ = sk.classes_

        def predict_proba(self, context: Any, model_input: pd.DataFrame) -> np.ndarray:
            return sk.predict_proba(model_input)

    model = PyfuncModel(_Pyfunc(python_model=Notebook()), "python_function")
    np.testing.assert_allclose(model.predict_proba(X), sk.predict_proba(X))


def test_without_probabilities_the_answer_is_pyfunc_s_one_value_per_record():
    pyfunc = _Pyfunc(python_model=object(), predict=lambda X: pd.DataFrame({"y": X["b"] * 2}))
    model = PyfuncModel(pyfunc, "python_function", columns=["b"])
    assert not model.has_proba
    scores = LoadedModel("m", "1", model, "regression").score(pd.DataFrame({"a": [1, 2], "b": [0.5, 1.0]}))
    assert scores.prediction.tolist() == [1.0, 2.0] and scores.probability is None
    assert list(pyfunc.inputs[0].columns) == ["b"]
    with pytest.raises(ValueError, match="2 columns per record"):
        as_column(pd.DataFrame({"x": [1], "y": [2]}))


def test_a_signature_becomes_the_contract():
    from mlflow.models import infer_signature

    frame = pd.DataFrame({"n": [1, 2], "x": [0.5, np.nan], "s": ["a", None],
                          "t": pd.to_datetime(["2024-01-01", "2024-01-02"]), "ok": [True, False]})
    schema = schema_from_signature(infer_signature(frame, np.array([1, 0])))
    assert list(schema.columns) == ["n", "x", "s", "t", "ok"]
    assert {c: str(col.dtype) for c, col in schema.columns.items()} == {
        "n": "int64", "x": "float64", "s": "str", "t": "datetime64[ns]", "ok": "bool"}
    assert schema.columns["x"].nullable and not schema.columns["n"].nullable
    assert schema.columns["s"].nullable  # infer_signature saw a None: an optional input
    with pytest.raises(SignatureError, match="no signature with named input columns"):
        schema_from_signature(None)


def test_mlflow_scoring_bodies_become_records():
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert to_records({"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]}}) == rows
    assert to_records({"dataframe_records": rows}) == rows
    assert to_records({"instances": rows}) == rows
    assert to_records({"inputs": {"a": [1, 2], "b": ["x", "y"]}, "params": {"k": 1}}) == rows
    for bad in ({}, {"instances": rows, "inputs": rows},
                {"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}},
                {"inputs": {"a": [1, 2], "b": ["x"]}}, [1]):
        with pytest.raises(RequestError) as err:
            to_records(bad)
        assert err.value.status == 400
    assert b"NaN" in predict_body(b'{"dataframe_records": [{"a": NaN}]}')  # refused later, as in /predict
    body, headers = invocations_answer(b'{"model_name": "m", "model_version": "3", "role": "champion", '
                                       b'"batch_id": "b1", "predictions": [{"request_id": "b1-0", '
                                       b'"prediction": 1, "probability": 0.7}]}')
    assert body == b'{"predictions": [1]}' and headers["x-mlops-model-version"] == "3"


class _Registry:
    def __init__(self) -> None:
        self.version = "1"

    def version_by_alias(self, name: str, alias: str) -> Any:
        return SimpleNamespace(version=self.version, tags={})


def test_a_version_that_fails_to_load_is_never_swapped_in(monkeypatch):
    sk, _ = _fitted()
    attempts: list[str] = []

    def load_version(name: str, version: str, prepare: Any = None) -> LoadedModel:
        attempts.append(version)
        if version == "2":
            raise OSError("artifact\nmissing")
        return LoadedModel(name, version, sk, "classification")

    monkeypatch.setattr(loader, "load_version", load_version)
    registry, failed = _Registry(), []
    watcher = ModelWatcher(registry, "m", on_load_failed=failed.append, retry_seconds=60)
    watcher.poll()
    assert watcher.champion.version == "1" and watcher.load_problem() is None
    registry.version = "2"
    watcher.poll()
    watcher.poll()  # within retry_seconds: not tried again
    assert watcher.champion.version == "1" and attempts == ["1", "2"] and len(failed) == 1
    assert watcher.load_problem() == ("champion v2 failed to load (OSError: artifact missing); "
                                      "still serving v1")
    watcher._retry_now = True  # what refresh_now asks for
    watcher.poll()
    assert attempts == ["1", "2", "2"] and len(failed) == 2
    registry.version = "1"
    watcher.poll()
    assert watcher.load_problem() is None and attempts == ["1", "2", "2"]


def test_open_inference_protocol_tensors_become_records_and_the_answer_is_v2():
    from mlops_pipeline.serving import v2

    payload = {"id": "r1", "inputs": [
        {"name": "a", "shape": [2, 1], "datatype": "INT64", "data": [[1], [2]]},
        {"name": "b", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]}]}
    assert v2.to_records(payload) == ([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], "r1")
    for bad in ({"inputs": []}, {"inputs": [{"name": "a", "shape": [3], "data": [1, 2]}]},
                {"inputs": [{"name": "a", "shape": [2, 2], "data": [1, 2, 3, 4]}]},
                {"inputs": [{"name": "a", "shape": [1], "data": [1]},
                            {"name": "b", "shape": [2], "data": [1, 2]}]}):
        with pytest.raises(RequestError) as err:
            v2.to_records(bad)
        assert err.value.status == 400
    answer = json.loads(v2.infer_answer(
        b'{"model_name": "m", "model_version": "3", "role": "canary", "batch_id": "b1", "predictions": '
        b'[{"request_id": "b1-0", "prediction": 1, "probability": 0.7}, '
        b'{"request_id": "b1-1", "prediction": 0, "probability": 0.2}]}', "r1"))
    assert answer == {"model_name": "m", "model_version": "3", "id": "r1",
                      "parameters": {"batch_id": "b1", "role": "canary"},
                      "outputs": [{"name": "predict", "shape": [2, 1], "datatype": "INT64", "data": [1, 0]},
                                  {"name": "probability", "shape": [2, 1], "datatype": "FP64",
                                   "data": [0.7, 0.2]}]}
