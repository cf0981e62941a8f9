"""Scoring a model on a holdout the way the gate does gives the metrics training logged for it:
the comparison with the champion measures the models, not the scoring path. No Dagster."""

from __future__ import annotations

import pytest

from mlops_pipeline.data.preparation import prepare
from mlops_pipeline.deployment.scoring import score_model, score_version
from mlops_pipeline.spec import load_spec
from mlops_pipeline.training.fit import fit_and_score


def test_a_model_scored_on_its_holdout_gets_the_metrics_training_computed(flights):
    spec = load_spec("data/configs/flights.yaml")
    frame = prepare(flights[flights["month"] <= 2].sample(frac=0.05, random_state=3), spec).frame
    fitted = fit_and_score(frame, spec, spec.model.seed)
    assert score_model(fitted.model, frame, spec) == pytest.approx(fitted.metrics)


def test_a_registered_version_is_loaded_through_the_clients_configuration(monkeypatch, data_dir):
    import importlib

    artifacts = importlib.import_module("mlflow.artifacts")  # the module, not mlflow's lazy stand-in
    loaded, calls = object(), []

    class Client:
        def configure(self):
            calls.append("configure")

    def download_artifacts(artifact_uri):
        calls.append(artifact_uri)
        return "/downloaded/model"

    def load_local(path):  # serving's loader: the same one for every flavor
        calls.append(path)
        return loaded, "classification", "sklearn"

    monkeypatch.setattr(artifacts, "download_artifacts", download_artifacts)
    monkeypatch.setattr("mlops_pipeline.serving.flavors.load_local", load_local)
    monkeypatch.setattr("mlops_pipeline.deployment.scoring.score_model",
                        lambda model, df, spec: {"model_is_the_loaded_one": model is loaded})
    assert score_version(Client(), "flights", "7", None, None) == {"model_is_the_loaded_one": True}
    assert calls == ["configure", "models:/flights/7", "/downloaded/model"]
