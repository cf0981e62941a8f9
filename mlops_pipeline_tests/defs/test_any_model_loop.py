"""Any model (issue 26): the loop with `model.estimator` on real tables nobody tuned for, and
models trained outside the loop promoted through the same gate.

`fair` (statsmodels, binary `affairs > 0`) with `LogisticRegression` behind one-hot and scaling
(and a decision threshold chosen for F1) and with `LGBMClassifier` on its native categoricals;
`randhie` (doctor visits, regression) with `XGBRegressor`. Each is trained, gated (with the
inference-cost rule) and registered by the Dagster loop once per case, served by the real server
(whose answers must be the registered model's, thresholded by the stored threshold), monitored
downstream of those answers (drift, quality from labels, estimates before labels, the labeling
queue, explain) and reproduced from its manifest with identical predictions. The worked example
of `model.train` returning an MLflow `PythonModel` (examples/train_pyfunc.py) goes the same way:
logged with mlflow.pyfunc, gated, registered, served with its threshold, reproduced.

After the LightGBM case, models registered outside the loop, as from a notebook, are promoted with
`mlops-pipeline promote` (issue 26 item 6): loaded through their flavor and scored on the
champion's trusted holdout against the champion by THE gate. A worse one (random probabilities) is
blocked and the champion stays; an `xgboost`-flavor model registered under the dataset's name and a
`pyfunc` model under a name of its own pass (the pyfunc copied into the dataset's model), tagged
`origin=external`; their card and `explain` say what is unknown; `reproduce` refuses them in one line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from examples.train_pyfunc import SklearnPythonModel
from mlops_pipeline_tests.cli.conftest import FAIR_CONFIG
from mlops_pipeline_tests.conftest import materialized

pytestmark = pytest.mark.slow

RANDHIE = yaml.safe_load(Path("data/configs/randhie.yaml").read_text())
SERVED, LABELLED = 200, 120  # records served by the real server; of them, labelled afterwards

CASES = {
    "fair_logistic_onehot_threshold": (
        "fair", {"estimator": "sklearn.linear_model.LogisticRegression", "preprocessing": "onehot",
                 "params": {"max_iter": 500}, "threshold": {"objective": "f1"}}),
    "fair_lightgbm": ("fair", {"estimator": "lightgbm.LGBMClassifier",
                               "params": {"n_estimators": 40, "num_leaves": 15}}),
    "randhie_xgboost": ("randhie", {"estimator": "xgboost.XGBRegressor",
                                    "params": {"n_estimators": 60, "max_depth": 3,
                                               "learning_rate": 0.1}}),
}


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
class Trained:
    case: str
    model_section: dict
    root: Path  # MLOPS_DATA_DIR
    config: Path
    spec: Any
    frame: pd.DataFrame
    champion: Any  # the registered ModelVersion the loop made champion
    model: Any  # that version, loaded as sklearn
    served: pd.DataFrame  # the feature rows sent to the server, in order
    answers: list[dict]  # the server's predictions for them
    predictions_url: str
    health: dict  # what the server's /health said of the champion

    @property
    def features(self) -> list[str]:
        return list(self.spec.features.numerical)

    def env(self) -> dict[str, str]:
        return {"MLOPS_DATA_DIR": str(self.root), "MLOPS_DATASET_CONFIG": str(self.config),
                "DAGSTER_HOME": str(self.root.parent / "dagster_home"),
                "MLOPS_PREDICTIONS_URL": self.predictions_url}


def _dataset(table: str, model: dict, tmp: Path) -> tuple[Path, pd.DataFrame, Path]:
    """Land the table, write its config with `model` (and the gate's cost rule), infer its
    contract; returns (data dir, frame, config)."""
    import statsmodels.api as sm

    from mlops_pipeline.data.contract import infer_contract, write_contract
    from mlops_pipeline.spec import load_spec

    if table == "fair":
        frame = sm.datasets.fair.load_pandas().data.sample(frac=1.0, random_state=0)
        raw = {**FAIR_CONFIG, "source": {"path": "landing/fair/*.parquet", "format": "parquet"}}
    else:
        frame = sm.datasets.randhie.load_pandas().data
        raw = {**RANDHIE, "source": {"path": "landing/randhie/*.parquet", "format": "parquet"}}
    raw = {**raw, "contract": str(tmp / f"{table}_contract.yaml"), "model": {"seed": 7, **model},
           "gate": {**raw["gate"], "inference_cost": {"tolerance": 10.0}}}
    root = tmp / "data"
    landing = root / "landing" / table
    landing.mkdir(parents=True)
    frame = frame.reset_index(drop=True)
    frame.to_parquet(landing / "batch_001.parquet", index=False)
    config = tmp / f"{table}.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = load_spec(config)
    write_contract(infer_contract(frame, spec), spec.contract_path())
    return root, frame, config


def _serve(env: dict[str, str], rows: pd.DataFrame, log: Path) -> tuple[list[dict], dict]:
    """`mlops-pipeline serve` (the real server, following the champion) answering `rows`; and what
    its /health said of the champion."""
    from mlops_pipeline_tests.serving.conftest import BIN, free_port, start, stop, wait_http

    port = free_port()
    full = {**os.environ, **env, "MLOPS_SERVE_STATE_FILE": str(log.with_suffix(".json"))}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        full.pop(key, None)
    proc = start([str(BIN / "mlops-pipeline"), "serve", "--port", str(port)], full, log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/ready", proc, log)
        records = [{c: float(v) for c, v in r.items()} for r in rows.to_dict("records")]
        answer = httpx.post(f"{url}/predict", json={"records": records}, timeout=60)
        assert answer.status_code == 200, answer.text
        return answer.json()["predictions"], httpx.get(f"{url}/health", timeout=30).json()["champion"]
    finally:
        stop(proc)


def _use(mp: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """The case's data dir, config and stores in this process; no registry inherited."""
    for key, value in env.items():
        mp.setenv(key, value)
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLOPS_MLFLOW_UI_URL"):
        mp.delenv(key, raising=False)


def _run_loop(table: str, model_section: dict, tmp: Path, mp: pytest.MonkeyPatch):
    """Land `table` with `model_section`, then the whole `mlops_loop` in this process: returns
    (frame, config, env, spec, result) once training, registration and the champion materialized."""
    import dagster as dg

    from mlops_pipeline.defs.definitions import build_definitions
    from mlops_pipeline.spec import load_spec

    root, frame, config = _dataset(table, model_section, tmp)
    env = {"MLOPS_DATA_DIR": str(root), "MLOPS_DATASET_CONFIG": str(config),
           "DAGSTER_HOME": str(tmp / "dagster_home"),
           "MLOPS_PREDICTIONS_URL": f"sqlite:///{tmp / 'predictions.db'}"}
    _use(mp, env)
    with dg.DagsterInstance.ephemeral() as instance:
        result = build_definitions().resolve_job_def("mlops_loop").execute_in_process(
            instance=instance, raise_on_error=False)
    assert {"trained_model", "model_version", "champion_model"} <= materialized(result)
    return frame, config, env, load_spec(config), result


@pytest.fixture(scope="module", params=list(CASES))
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """One loop run per case, then 200 records served by the real server, 120 of them labelled."""
    from mlops_pipeline.deployment.tracking import MLflow
    from mlops_pipeline.monitoring.predictions import PredictionStore

    table, model_section = CASES[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    with pytest.MonkeyPatch.context() as mp:
        frame, config, env, spec, _ = _run_loop(table, model_section, tmp, mp)
        root, predictions_url = Path(env["MLOPS_DATA_DIR"]), env["MLOPS_PREDICTIONS_URL"]
        registry = MLflow()
        champion = registry.version_by_alias(spec.name, "champion")
        assert champion is not None
        registry.configure()
        model = mlflow.sklearn.load_model(f"models:/{spec.name}/{champion.version}")
        rows = frame.sample(SERVED, random_state=11)
        answers, health = _serve(env, rows[list(spec.features.numerical)], tmp / "serve.log")
        store = PredictionStore(predictions_url)
        for answer, label in zip(answers[:LABELLED], rows[spec.label_source], strict=False):
            store.set_label(answer["request_id"], float(label))
        store.close()
        yield Trained(request.param, model_section, root, config, spec, frame, champion, model,
                      rows, answers, predictions_url, health)


@pytest.fixture
def cli(trained: Trained, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """`mlops-pipeline ARGS` in this process against the case's data dir: (exit code, out, err)."""
    from mlops_pipeline.cli import main

    _use(monkeypatch, trained.env())

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def test_a_configured_estimator_is_registered_gated_with_its_cost_and_served(trained):
    from mlops_pipeline.deployment.tags import GATE_STATUS_TAG
    from mlops_pipeline.training.estimators import final_estimator
    from mlops_pipeline.training.model import class_info

    spec, model, champion = trained.spec, trained.model, trained.champion
    assert champion.tags.get(GATE_STATUS_TAG) == "passed", champion.tags
    assert type(final_estimator(model)).__name__ == trained.model_section["estimator"].rsplit(".", 1)[1]
    # The cost rule measured this estimator too; the card shows it beside the snapshot it came from.
    card = champion.description
    cost = next(line for line in card.splitlines() if line.startswith("| inference_cost (CPU s / 1k rows) |"))
    assert float(cost.split("|")[2]) > 0, cost
    assert f"Snapshot `{champion.tags['snapshot_id']}`" in card

    # Served by its compiled form (serving.compiled: the columns in numpy), with the same bits.
    assert trained.health["compiled"] is True, trained.health
    X = trained.served[trained.features]
    served = np.array([p["prediction"] for p in trained.answers], dtype="float64")
    if spec.task == "regression":
        np.testing.assert_array_equal(served, model.predict(X))
        return
    probability = np.array([p["probability"] for p in trained.answers])
    np.testing.assert_array_equal(probability, model.predict_proba(X)[:, 1])
    threshold = class_info(model).threshold
    if "threshold" in trained.model_section:
        # The stored threshold decides, not 0.5: some answers differ from the argmax's.
        assert threshold is not None and threshold != 0.5
        logged = mlflow.get_run(champion.run_id).data.params["decision_threshold"]
        assert float(logged) == pytest.approx(threshold)
        np.testing.assert_array_equal(served, (probability >= threshold).astype(float))
        assert (served != (probability >= 0.5)).any()
    else:
        assert threshold is None
        np.testing.assert_array_equal(served, model.predict(X).astype(float))


def test_drift_quality_estimates_labeling_and_explain_work_downstream_of_the_estimator(trained, cli):
    import dagster as dg
    from sklearn import metrics as m

    from mlops_pipeline.data.preparation import target_from_feedback
    from mlops_pipeline.defs.definitions import build_definitions

    spec = trained.spec
    with dg.DagsterInstance.ephemeral() as instance:
        result = build_definitions().resolve_job_def("production_monitoring").execute_in_process(
            instance=instance, partition_key=datetime.now(UTC).strftime("%Y-%m-%d"),
            raise_on_error=False)

    def meta(asset: str) -> dict[str, Any]:
        events = result.asset_materializations_for_node(asset)
        assert events, f"{asset} did not materialize"
        return {k: getattr(v, "value", v) for k, v in events[-1].metadata.items()}

    log = meta("prediction_log")
    assert log["served"] == SERVED and log["labelled"] == LABELLED
    drift = meta("production_drift")
    assert drift["reference"].startswith(f"champion v{trained.champion.version} training split")
    assert 0.0 <= drift["drift_share"] <= 1.0 and drift["current"].startswith("production_")
    # Realized quality is that of what was served (the stored threshold's decisions).
    y = target_from_feedback(trained.served[spec.label_source].head(LABELLED), spec)
    served = np.array([p["prediction"] for p in trained.answers[:LABELLED]], dtype=float)
    quality = meta("model_quality")
    if spec.task == "classification":
        assert quality["production_f1"] == pytest.approx(m.f1_score(y.astype(int), served.astype(int)))
        assert quality["production_accuracy"] == pytest.approx(m.accuracy_score(y.astype(int), served))
    else:
        assert quality["production_mae"] == pytest.approx(m.mean_absolute_error(y, served))
    estimated = meta("estimated_performance")
    key = "estimated_roc_auc" if spec.task == "classification" else "estimated_mae"
    assert np.isfinite(estimated[key]) and estimated[f"{key}_lower"] <= estimated[key]
    queue = meta("labeling_queue")
    assert queue["served_unlabelled"] == SERVED - LABELLED
    assert 0 < queue["queued"] <= SERVED - LABELLED
    assert set(queue["request_ids"]) <= {p["request_id"] for p in trained.answers[LABELLED:]}
    code, out, err = cli("explain", trained.answers[0]["request_id"])
    assert code == 0, err
    assert f"model {spec.name} v{trained.champion.version}" in out
    assert f"snapshot {trained.champion.tags['snapshot_id']}" in out


def test_the_estimator_is_reproduced_bit_identical(trained, cli):
    code, out, err = cli("reproduce", "champion")
    assert code == 0, out + err
    assert f"REPRODUCED {trained.spec.name} v{trained.champion.version}" in out and "bit-identical" in out


def test_the_example_python_model_is_logged_gated_registered_served_and_reproduced(tmp_path, monkeypatch,
                                                                                   capsys):
    """`model.train` returning an MLflow `PythonModel` (examples/train_pyfunc.py): logged with
    mlflow.pyfunc, gated on the holdout, registered, served with its class probabilities (and the
    decision threshold chosen on validation) by the real server and reproduced bit-identically."""
    from mlflow.models import Model

    from mlops_pipeline.cli import main
    from mlops_pipeline.deployment.scoring import load_version
    from mlops_pipeline.deployment.tags import GATE_STATUS_TAG
    from mlops_pipeline.deployment.tracking import MLflow
    from mlops_pipeline.training.model import class_info

    model_section = {"train": "examples.train_pyfunc:train", "params": {"C_grid": "0.1,1"},
                     "threshold": {"objective": "f1"}}
    frame, _, env, spec, result = _run_loop("fair", model_section, tmp_path, monkeypatch)
    trained = result.asset_materializations_for_node("trained_model")[-1].metadata
    assert trained["model"].value == ("model.train examples.train_pyfunc:train: SklearnPythonModel "
                                      "(mlflow.pyfunc)")

    registry = MLflow()
    champion = registry.version_by_alias(spec.name, "champion")
    assert champion is not None and champion.tags.get(GATE_STATUS_TAG) == "passed", champion
    assert float(champion.tags["holdout_roc_auc"]) > 0.65  # scored on the holdout by the gate's path
    registry.configure()
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{spec.name}/{champion.version}")
    logged = Model.load(local)
    assert "sklearn" not in logged.flavors and logged.flavors["python_function"]["loader_module"] == \
        "mlflow.pyfunc.model"
    assert list(logged.get_input_schema().input_names()) == list(spec.features.numerical)
    assert len(logged.load_input_example(local)) == 5
    loaded = load_version(registry, spec.name, str(champion.version))
    classes = class_info(loaded)  # the positive class and threshold were saved on the PythonModel
    assert loaded.has_proba and classes.positive_label == 1
    assert classes.threshold is not None and classes.threshold != 0.5
    assert float(mlflow.get_run(champion.run_id).data.params["decision_threshold"]) == classes.threshold

    rows = frame.sample(50, random_state=5)[list(spec.features.numerical)]
    answers, _ = _serve(env, rows, tmp_path / "serve.log")
    probability = loaded.predict_proba(rows)[:, 1]
    np.testing.assert_allclose([a["probability"] for a in answers], probability, rtol=1e-9)
    served = np.array([a["prediction"] for a in answers], dtype=float)
    np.testing.assert_array_equal(served, (probability >= classes.threshold).astype(float))

    capsys.readouterr()
    assert main(["reproduce", "champion"]) == 0
    out = capsys.readouterr().out
    assert f"REPRODUCED {spec.name} v{champion.version}" in out and "bit-identical" in out, out


# ---- versions trained outside the loop, promoted through the same gate (on the LightGBM run) ------
@dataclass(frozen=True)
class Notebook:
    xgb: Any  # the foreign model, fitted on every row (which rows it saw is exactly what is unknown)
    client: Any


@pytest.fixture(scope="module")
def notebook(trained: Trained) -> Iterator[Notebook]:
    """The notebook's models registered beside the loop's champion, as `log_model` registers them."""
    import cloudpickle
    import xgboost
    from mlflow.models import infer_signature

    uri = f"sqlite:///{trained.root / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the server cannot import tests
    experiment = client.create_experiment("notebook")
    X, y = trained.frame[trained.features], (trained.frame["affairs"] > 0).astype(int)
    xgb = xgboost.XGBClassifier(n_estimators=60, max_depth=3, random_state=0).fit(X, y)
    signature = infer_signature(X, xgb.predict(X))
    with mlflow.start_run(experiment_id=experiment):
        mlflow.xgboost.log_model(xgb, name="model", signature=signature, input_example=X.head(3),
                                 registered_model_name=trained.spec.name)
    for model, name in ((SklearnPythonModel(xgb), "fair_notebook"), (Coin(), "fair_coin"),
                        (LabelsOnly(), "fair_labels")):
        with mlflow.start_run(experiment_id=experiment):
            mlflow.pyfunc.log_model(name="model", python_model=model, signature=signature,
                                    input_example=X.head(3), registered_model_name=name)
    yield Notebook(xgb, client)
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _champion(trained: Trained, client: Any) -> str:
    return str(client.get_model_version_by_alias(trained.spec.name, "champion").version)


@pytest.mark.parametrize("trained", ["fair_lightgbm"], indirect=True)
def test_a_worse_foreign_model_is_blocked_by_the_gate_and_the_champion_stays(trained, notebook, cli):
    client, name = notebook.client, trained.spec.name
    before, versions = _champion(trained, client), len(client.search_model_versions(f"name='{name}'"))
    code, out, err = cli("promote", "1", "--model-name", "fair_coin")
    assert code == 1, out + err
    assert "(the champion's holdout: trained outside the loop" in out and "roc_auc" in out
    assert "did not pass the gate" in err
    assert _champion(trained, client) == before  # untouched, and nothing copied into the dataset's model
    assert len(client.search_model_versions(f"name='{name}'")) == versions
    coin = client.get_model_version("fair_coin", "1")
    assert coin.tags["origin"] == "external" and coin.tags["gate.status"] == "failed"
    assert coin.tags["gate.champion_version"] == before and "roc_auc" in coin.tags["gate.reasons"]
    assert "Unknown: trained outside the loop" in coin.description
    # No probabilities: the classification gate cannot score it, said in one line.
    code, out, err = cli("promote", "1", "--model-name", "fair_labels")
    assert code == 1 and _champion(trained, client) == before
    assert err.count("\n") == 1 and "offers no class probabilities" in err, err


@pytest.mark.parametrize("trained", ["fair_lightgbm"], indirect=True)
def test_foreign_xgboost_and_pyfunc_models_pass_the_same_gate_are_served_and_not_reproduced(
        trained, notebook, cli, tmp_path):
    client, name = notebook.client, trained.spec.name
    loop_champion = _champion(trained, client)
    # The xgboost-flavor model registered under the dataset's own name: `promote VERSION`.
    xgb_version = max(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    code, out, err = cli("promote", str(xgb_version))
    assert code == 0, out + err
    assert f"vs champion v{loop_champion}" in out and "gate: passed" in out
    assert f"{name} v{xgb_version} tagged origin=external" in out
    assert _champion(trained, client) == str(xgb_version)
    # The notebook's pyfunc model of another name: gated, then copied into the dataset's model.
    code, out, err = cli("promote", "1", "--model-name", "fair_notebook", "--config", str(trained.config))
    assert code == 0, out + err
    champion = client.get_model_version_by_alias(name, "champion")
    assert int(champion.version) == xgb_version + 1 and "gate: passed" in out
    tags = champion.tags
    assert tags["origin"] == "external" and tags["copied_from"] == "fair_notebook/1"
    assert tags["gate.status"] == "passed" and tags["gate.champion_version"] == str(xgb_version)
    assert float(tags["holdout_roc_auc"]) > 0.6 and float(tags["holdout_inference_cost"]) > 0
    assert "snapshot_id" not in tags and "Unknown: trained outside the loop" in champion.description
    assert client.get_model_version("fair_notebook", "1").tags["origin"] == "external"

    # Served by the dataset's server (following its champion): the foreign model's answers.
    rows = trained.frame.head(5)[trained.features]
    answers, _ = _serve(trained.env(), rows, tmp_path / "serve.log")
    np.testing.assert_allclose([p["probability"] for p in answers],
                               notebook.xgb.predict_proba(rows)[:, 1], rtol=1e-6)

    # explain says what is unknown instead of failing; reproduce refuses in one line.
    code, out, err = cli("explain", answers[0]["request_id"])
    assert code == 0, err
    assert f"model {name} v{champion.version}" in out
    assert "origin: external (copied from fair_notebook/1)" in out
    assert "manifest: unknown: trained outside the loop (origin=external)" in out
    assert f"gate: passed against champion v{xgb_version}" in out
    code, out, err = cli("reproduce", "champion", "--config", str(trained.config))
    assert code == 2 and out == "" and err.count("\n") == 1, (out, err)
    assert "trained outside the loop (origin=external)" in err

    # Forced past a gate that could not score it, a champion without probabilities: the estimates
    # before labels say so in one line instead of failing on it.
    from mlops_pipeline.cli.common import mlflow_client, storage_client
    from mlops_pipeline.monitoring.champion import ChampionUnavailable, champion_estimator
    from mlops_pipeline.settings import Settings

    code, out, err = cli("promote", "1", "--model-name", "fair_labels", "--force")
    assert code == 0, out + err
    forced = client.get_model_version_by_alias(name, "champion")
    assert forced.tags["origin"] == "external" and forced.tags["promotion.forced"] == "true"
    with pytest.raises(ChampionUnavailable, match="offers no class probabilities"):
        settings = Settings.from_env()
        champion_estimator(trained.spec, storage_client(settings), mlflow_client(settings))
    _labels_only_champion_is_monitored(trained, forced.version)


def _labels_only_champion_is_monitored(trained: Trained, version: str) -> None:
    """A classifier champion answering labels only: its drift reference is rebuilt with its predicted
    labels (a category), production drift measures the inputs and the served labels against it,
    and the estimates before labels say in one line why there are none instead of failing."""
    import dagster as dg

    from mlops_pipeline.defs.definitions import build_definitions

    job = build_definitions().resolve_job_def("production_monitoring").get_subset(asset_selection={
        dg.AssetKey(a) for a in ("prediction_log", "production_drift", "estimated_performance",
                                 "estimate_vs_realized")})
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False,
                                        partition_key=datetime.now(UTC).strftime("%Y-%m-%d"))
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    drift = result.asset_materializations_for_node("production_drift")[-1].metadata
    assert drift["reference"].value.startswith(f"champion v{version} training split")
    assert drift["reference_source"].value.startswith("rebuilt from snapshot")
    columns = {r.data["column"]: r.data for r in drift["columns"].value.records}
    assert set(trained.features) | {"prediction"} <= set(columns)
    assert columns["prediction"]["method"] == "jensenshannon"  # the labels, compared as a category
    assert "production_input_drift" in checks
    assert checks["production_prediction_drift"].description.startswith("prediction jensenshannon")
    for check in ("estimated_quality", "estimate_within_band", "concept_drift"):
        text = checks[check].description
        assert checks[check].passed and "\n" not in text, (check, text)
        assert f"champion v{version} (python_function flavor) offers no class probabilities" in text
    assert result.success, [e.message for e in result.all_events if e.is_failure]
