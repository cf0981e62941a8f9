"""Serving answers for every task type without starting a process: the model's answer per record
(class label in its own type, its probability, every class's probability), the JSON body, and
which feedback labels are accepted. The real process and registry: test_task_types_loop.py."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from mlops_pipeline.serving.loader import LoadedModel
from mlops_pipeline.serving.responses import predictions_body
from mlops_pipeline.serving.server import Server
from mlops_pipeline.spec import load_spec
from mlops_pipeline_tests.training.test_task_types import _fit, _frame, _spec


def test_a_multi_class_answer_names_the_class_and_every_probability():
    X, y = _frame(n=600, classes=("low", "mid", "high"), weights=(0.5, 0.3, 0.2))
    model, info = _fit(_spec(), X, y)
    loaded = LoadedModel("credit", "3", model, "classification")
    assert loaded.classes == info
    scores = loaded.score(X.head(4))
    assert scores.prediction.tolist() == model.predict(X.head(4)).tolist()
    np.testing.assert_allclose(scores.probability, scores.probabilities.max(axis=1))
    body = json.loads(predictions_body({"model_version": "3"}, ["a", "b", "c", "d"], scores.prediction,
                                       scores.probability, scores.probabilities, info.labels))
    first = body["predictions"][0]
    assert set(first) == {"request_id", "prediction", "probability", "probabilities"}
    assert list(first["probabilities"]) == ["high", "low", "mid"]
    assert first["probabilities"][first["prediction"]] == first["probability"]


def test_a_binary_string_answer_gives_the_positive_class_probability():
    X, y = _frame()
    model, info = _fit(_spec(positive="good"), X, y)
    scores = LoadedModel("credit", "1", model, "classification").score(X.head(3))
    np.testing.assert_allclose(scores.probability, model.predict_proba(X.head(3))[:, info.positive])
    body = json.loads(predictions_body({}, ["a", "b", "c"], scores.prediction, scores.probability,
                                       scores.probabilities, info.labels))
    for p in body["predictions"]:
        assert p["probabilities"]["good"] == p["probability"] and p["prediction"] in ("good", "bad")


def _server(spec, model=None):
    champion = None if model is None else LoadedModel(spec.name, "1", model, "classification")
    return SimpleNamespace(spec=spec, watcher=SimpleNamespace(champion=champion))


def test_feedback_takes_the_label_in_the_dataset_s_own_type():
    X, y = _frame()
    model, _ = _fit(_spec(), X, y)
    strings = _server(_spec(), model)
    assert Server._feedback_label(strings, "bad") == ("bad", None)
    label, problem = Server._feedback_label(strings, 1)
    assert label is None and "expected a string class" in problem
    # A class the model does not know is no label (issue 24 item 10): refused, naming the classes.
    assert Server._feedback_label(strings, "maybe") == (
        None, f"'maybe' is not a class of '{_spec().target.name}': use one of 'bad', 'good'")
    flights = _server(load_spec("data/configs/flights.yaml"))
    assert Server._feedback_label(flights, 27) == (27.0, None)  # arr_delay minutes
    assert "expected a number" in Server._feedback_label(flights, "late")[1]
