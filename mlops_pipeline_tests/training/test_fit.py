"""Training proper runs without Dagster or MLflow: the asset, `reproduce` and the loop benchmark's
plain baseline all call it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.data.preparation import prepare
from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN
from mlops_pipeline.spec import load_spec
from mlops_pipeline.training.fit import drift_reference, fit_and_score
from mlops_pipeline.training.model import predict_scores


@pytest.fixture(scope="module")
def fitted(flights):
    spec = load_spec("data/configs/flights.yaml")
    frame = prepare(flights[flights["month"] <= 2].sample(6000, random_state=1), spec).frame
    return spec, frame, fit_and_score(frame, spec, spec.model.seed)


def test_training_coerces_to_the_contract_and_scores_the_holdout(fitted):
    spec, frame, f = fitted
    assert list(f.X_train.columns) == list(spec.features.columns)
    assert len(f.X_train) + len(f.X_hold) == len(frame) and len(f.scores) == len(f.y_hold)
    assert set(f.metrics) == {"roc_auc", "log_loss", "brier", "f1", "macro_f1", "accuracy"}
    assert f.metrics["roc_auc"] > 0.55


def test_shuffled_labels_train_a_worse_model(fitted):
    spec, frame, f = fitted
    shuffled = fit_and_score(frame, spec, spec.model.seed, shuffle_labels=True)
    assert shuffled.metrics["roc_auc"] < f.metrics["roc_auc"] - 0.05


def test_the_drift_reference_is_the_train_split_scored_by_its_model(fitted):
    spec, _, f = fitted
    reference = drift_reference(f.model, f.X_train, spec.task)
    assert list(reference.columns) == [*f.X_train.columns, PREDICTION_COLUMN]
    np.testing.assert_array_equal(reference[PREDICTION_COLUMN], predict_scores(f.model, f.X_train, spec.task))
    pd.testing.assert_frame_equal(reference.drop(columns=PREDICTION_COLUMN), f.X_train.reset_index(drop=True))
    assert PREDICTION_COLUMN not in f.X_train  # the split itself is left as it was


def test_training_imports_neither_dagster_nor_mlflow():
    code = ("import sys, mlops_pipeline.training.fit, mlops_pipeline.data.snapshots, "
            "mlops_pipeline.training.model; "
            "print([m for m in ('dagster', 'mlflow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
