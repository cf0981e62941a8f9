"""Foreign versions go through the same gate (issue 26 item 6).

After one loop run on `fair` (the loop's HistGradientBoosting champion), models registered outside
the loop, as from a notebook, are promoted with `mlops-pipeline promote`: each is loaded through its
flavor and scored on the champion's trusted holdout against the champion by THE gate. A worse one
(random probabilities) is blocked and the champion stays; an `xgboost`-flavor model registered under
the dataset's name and a `pyfunc` model under a name of its own pass and become champion (the
pyfunc copied into the dataset's model), tagged `origin=external`. Their card and `explain` say what
is unknown, and `reproduce` refuses them in one line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_pipeline_tests.cli.conftest import FAIR_CONFIG

pytestmark = pytest.mark.slow

FEATURES = FAIR_CONFIG["features"]["numerical"]


class Wrapped(mlflow.pyfunc.PythonModel):
    """A notebook's wrapper around a fitted classifier: labels, class probabilities and classes."""

    def __init__(self, model: Any):
        self.model = model
        self.classes_ = model.classes_

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return self.model.predict(model_input)

    def predict_proba(self, model_input: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(model_input)


class Coin(mlflow.pyfunc.PythonModel):
    """A worse model: probabilities that know nothing of the rows."""

    classes_ = np.array([0, 1])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return np.zeros(len(model_input), dtype=int)

    def predict_proba(self, model_input: pd.DataFrame) -> np.ndarray:
        p = np.random.default_rng(0).random(len(model_input))
        return np.column_stack([1 - p, p])


class LabelsOnly(mlflow.pyfunc.PythonModel):
    """A model that answers labels and no probabilities."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return np.ones(len(model_input), dtype=int)


@dataclass(frozen=True)
class Loop:
    root: Path
    config: Path
    name: str
    frame: pd.DataFrame
    xgb: Any  # the foreign model, fitted on every row (which rows it saw is exactly what is unknown)
    experiment: str


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    """One loop run on `fair`, then the notebook's registered models beside its champion."""
    import cloudpickle
    import dagster as dg
    import statsmodels.api as sm
    import xgboost
    from mlflow.models import infer_signature

    from mlops_pipeline.data.contract import infer_contract, write_contract
    from mlops_pipeline.defs.definitions import build_definitions
    from mlops_pipeline.deployment.tracking import MLflow
    from mlops_pipeline.spec import load_spec

    tmp = tmp_path_factory.mktemp("external")
    root = tmp / "data"
    frame = sm.datasets.fair.load_pandas().data.sample(frac=1.0, random_state=0).reset_index(drop=True)
    (root / "landing" / "fair").mkdir(parents=True)
    frame.to_parquet(root / "landing" / "fair" / "batch_001.parquet", index=False)
    config = tmp / "fair.yaml"
    config.write_text(yaml.safe_dump({
        **FAIR_CONFIG, "source": {"path": "landing/fair/*.parquet", "format": "parquet"},
        "contract": str(tmp / "fair_contract.yaml"), "model": {"seed": 7}}, sort_keys=False))
    spec = load_spec(config)
    write_contract(infer_contract(frame, spec), spec.contract_path())
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the server cannot import tests
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_DATA_DIR", str(root))
        mp.setenv("MLOPS_DATASET_CONFIG", str(config))
        mp.setenv("DAGSTER_HOME", str(tmp / "dagster_home"))
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLOPS_MLFLOW_UI_URL"):
            mp.delenv(key, raising=False)
        with dg.DagsterInstance.ephemeral() as instance:
            result = build_definitions().resolve_job_def("mlops_loop").execute_in_process(
                instance=instance, raise_on_error=False)
        assert result.success, [e.description for e in result.get_asset_check_evaluations()]
        registry = MLflow()
        registry.configure()  # the notebook logs to this registry (no other global is left set)
        experiment = registry.client().create_experiment("notebook")
        X, y = frame[FEATURES], (frame["affairs"] > 0).astype(int)
        xgb = xgboost.XGBClassifier(n_estimators=60, max_depth=3, random_state=0).fit(X, y)
        signature = infer_signature(X, xgb.predict(X))
        with mlflow.start_run(experiment_id=experiment):
            mlflow.xgboost.log_model(xgb, name="model", signature=signature, input_example=X.head(3),
                                     registered_model_name=spec.name)
        for model, name in ((Wrapped(xgb), "fair_notebook"), (Coin(), "fair_coin"),
                            (LabelsOnly(), "fair_labels")):
            with mlflow.start_run(experiment_id=experiment):
                mlflow.pyfunc.log_model(name="model", python_model=model, signature=signature,
                                        input_example=X.head(3), registered_model_name=name)
        yield Loop(root, config, spec.name, frame, xgb, experiment)
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _client(loop: Loop) -> Any:
    uri = f"sqlite:///{loop.root / 'mlflow' / 'mlflow.db'}"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _champion(loop: Loop) -> str:
    return str(_client(loop).get_model_version_by_alias(loop.name, "champion").version)


@pytest.fixture
def cli(loop: Loop, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """`mlops-pipeline ARGS` in this process against the loop's data dir: (exit code, out, err)."""
    from mlops_pipeline.cli import main

    monkeypatch.setenv("MLOPS_DATA_DIR", str(loop.root))
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(loop.config))
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLOPS_MLFLOW_UI_URL"):
        monkeypatch.delenv(key, raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def test_a_worse_foreign_model_is_blocked_by_the_gate_and_the_champion_stays(loop, cli):
    client = _client(loop)
    before, versions = _champion(loop), len(client.search_model_versions(f"name='{loop.name}'"))
    code, out, err = cli("promote", "1", "--model-name", "fair_coin")
    assert code == 1, out + err
    assert "(the champion's holdout: trained outside the loop" in out and "roc_auc" in out
    assert "did not pass the gate" in err
    assert _champion(loop) == before  # untouched, and nothing copied into the dataset's model
    assert len(client.search_model_versions(f"name='{loop.name}'")) == versions
    coin = client.get_model_version("fair_coin", "1")
    assert coin.tags["origin"] == "external" and coin.tags["gate.status"] == "failed"
    assert coin.tags["gate.champion_version"] == before and "roc_auc" in coin.tags["gate.reasons"]
    assert "Unknown: trained outside the loop" in coin.description
    # No probabilities: the classification gate cannot score it, said in one line.
    code, out, err = cli("promote", "1", "--model-name", "fair_labels")
    assert code == 1 and _champion(loop) == before
    assert err.count("\n") == 1 and "offers no class probabilities" in err, err


def test_foreign_xgboost_and_pyfunc_models_pass_the_same_gate_are_served_and_not_reproduced(
        loop, cli, tmp_path):
    from mlops_pipeline_tests.serving.conftest import BIN, free_port, start, stop, wait_http

    client = _client(loop)
    loop_champion = _champion(loop)
    # The xgboost-flavor model registered under the dataset's own name: `promote VERSION`.
    xgb_version = max(int(v.version) for v in client.search_model_versions(f"name='{loop.name}'"))
    code, out, err = cli("promote", str(xgb_version))
    assert code == 0, out + err
    assert f"vs champion v{loop_champion}" in out and "gate: passed" in out
    assert f"{loop.name} v{xgb_version} tagged origin=external" in out
    assert _champion(loop) == str(xgb_version)
    # The notebook's pyfunc model of another name: gated, then copied into the dataset's model.
    code, out, err = cli("promote", "1", "--model-name", "fair_notebook", "--config", str(loop.config))
    assert code == 0, out + err
    champion = client.get_model_version_by_alias(loop.name, "champion")
    assert int(champion.version) == xgb_version + 1 and "gate: passed" in out
    tags = champion.tags
    assert tags["origin"] == "external" and tags["copied_from"] == "fair_notebook/1"
    assert tags["gate.status"] == "passed" and tags["gate.champion_version"] == str(xgb_version)
    assert "snapshot_id" not in tags and "Unknown: trained outside the loop" in champion.description
    assert client.get_model_version("fair_notebook", "1").tags["origin"] == "external"

    # Served by the dataset's server (following its champion): the foreign model's answers.
    port, log = free_port(), tmp_path / "serve.log"
    predictions_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    env = {**os.environ, "MLOPS_DATA_DIR": str(loop.root), "MLOPS_DATASET_CONFIG": str(loop.config),
           "MLOPS_SERVE_STATE_FILE": str(tmp_path / "server.json")}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(key, None)
    proc = start([str(BIN / "mlops-pipeline"), "serve", "--port", str(port), "--predictions-url",
                  predictions_url], env, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", proc, log)
        rows = loop.frame.head(5)[FEATURES]
        r = httpx.post(f"http://127.0.0.1:{port}/predict", timeout=60,
                       json={"records": [{c: float(v) for c, v in row.items()}
                                         for row in rows.to_dict("records")]})
        assert r.status_code == 200, r.text
    finally:
        stop(proc)
    answer = r.json()
    assert answer["model_version"] == str(champion.version)
    np.testing.assert_allclose([p["probability"] for p in answer["predictions"]],
                               loop.xgb.predict_proba(rows)[:, 1], rtol=1e-6)

    # explain says what is unknown instead of failing; reproduce refuses in one line.
    code, out, err = cli("explain", answer["predictions"][0]["request_id"],
                         "--predictions-url", predictions_url)
    assert code == 0, err
    assert "origin: external (copied from fair_notebook/1)" in out
    assert "manifest: unknown: trained outside the loop (origin=external)" in out
    assert f"gate: passed against champion v{xgb_version}" in out
    code, out, err = cli("reproduce", "champion")
    assert code == 2 and out == "" and err.count("\n") == 1, (out, err)
    assert "trained outside the loop (origin=external)" in err
