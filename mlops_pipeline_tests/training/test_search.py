"""`model.search`: a seeded Optuna search checked at config load, run on a validation split carved
from the train split; with a database (Postgres, the production profile's) several processes share
one study."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

FAIR = Path("data/configs/fair.yaml")
LOGISTIC = {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300}}


@pytest.mark.parametrize(("model", "message"), [
    ({**LOGISTIC, "search": {"space": {"Cee": {"type": "float", "low": 0.1, "high": 1}}}},
     "model.search.space: ['Cee'] not parameters of LogisticRegression"),
    ({"search": {"space": {"n_estimators": {"type": "int", "low": 10, "high": 50}}}},
     "not parameters of the default HistGradientBoosting model"),
    ({"search": {"space": {"max_depth": {"type": "int", "low": 8, "high": 2}}}}, "needs `low` <= `high`"),
    ({"search": {"space": {"l2_regularization": {"type": "float", "low": 0, "high": 1, "log": True}}}},
     "`log: true` needs `low` > 0"),
    ({"search": {"space": {"max_depth": {"type": "categorical"}}}}, "needs `choices: [...]`"),
    ({"search": {"space": {}}}, "name at least one parameter"),
    ({"search": {"trials": 0, "space": {"max_depth": {"type": "int", "low": 2, "high": 8}}}}, "trials"),
])
def test_a_wrong_search_is_one_line_at_config_load(config_error, model, message):
    text = config_error(FAIR, **model)
    assert message in text, text


def test_the_search_storage_is_the_production_profiles_postgres_unless_named():
    from mlops_pipeline.defs.definitions import build_resources
    from mlops_pipeline.settings import Settings

    assert Settings().search_storage_setting == ""  # local: each study in memory
    pg = "postgresql+psycopg2://u:secret@127.0.0.1:5432/predictions"
    prod = Settings(profile="production", predictions_url=pg)
    assert prod.search_storage_setting == "predictions_url"
    named = Settings.from_env({"MLOPS_SEARCH_STORAGE": "postgresql://u:other@127.0.0.1/optuna"})
    assert named.search_storage_setting == "search_storage" and "other" in named.secrets()
    env = {"MLOPS_STORAGE_ROOT": "s3://b/p", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
           "MLOPS_PREDICTIONS_URL": pg, "MLOPS_PROFILE": "production"}
    assert build_resources(Settings.from_env(env))["search"].storage_url == pg
    assert build_resources(Settings())["search"].storage_url == ""


def test_two_processes_share_one_study_in_postgres(postgres, tmp_path):
    import optuna

    url = postgres.url("optuna", "postgresql+psycopg2")
    study = "fair_affairs-parallel"
    env = {**os.environ, "MLOPS_TEST_SEARCH_URL": url}
    import statsmodels.api as sm

    rows = tmp_path / "fair.parquet"
    sm.datasets.fair.load_pandas().data.sample(2000, random_state=0).to_parquet(rows)
    worker = [sys.executable, "-m", "mlops_pipeline_tests.training.search_worker", study, str(rows)]
    procs = [subprocess.Popen(worker, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    loaded = optuna.load_study(study_name=study, storage=url)
    complete = [t for t in loaded.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4  # two trials from each process
    assert {t.user_attrs["pid"] for t in complete} == {p.pid for p in procs}
    best = max(complete, key=lambda t: t.value)  # roc_auc: maximized
    assert loaded.direction == optuna.study.StudyDirection.MAXIMIZE
    assert loaded.best_trial.number == best.number
    for out in outputs:
        assert out["storage"] == "database" and out["trials"] == 2 and out["study_trials"] >= 2


def test_the_readmes_search_and_train_snippets_load(spec_with):
    import re

    from mlops_pipeline.spec import PROJECT_ROOT

    blocks = re.findall(r"```yaml\n(.*?)```", (PROJECT_ROOT / "README.md").read_text(), flags=re.S)
    for key in ("search", "train"):
        snippet = next(yaml.safe_load(b) for b in blocks if f"\n  {key}:" in b)
        spec = spec_with(FAIR, **snippet["model"])
        assert getattr(spec.model, key) is not None
