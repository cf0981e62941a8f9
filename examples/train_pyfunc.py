"""A `model.train` function that returns an MLflow `PythonModel` (`training.custom`,
`training.python_model`): the team's own model class, logged with `mlflow.pyfunc`, gated, registered,
served and reproduced by the loop like a fitted estimator.

Use it with `model: {train: examples.train_pyfunc:train}` (see examples/fair_pyfunc.yaml). Here the
model underneath is the logistic regression of `examples.train_logistic` (C picked on the validation
frame), wrapped in `SklearnPythonModel`; any code can stand behind the three members the loop uses:

- `predict(context, model_input, params=None)`: one answer per record (what `mlflow.pyfunc` serves);
- `predict_proba(model_input)`: the (n, k) class probabilities, columns in `classes_` order, and
- `classes_`: the classes. With both, a classifier is gated on probabilities (roc_auc, log_loss),
  served with `probability` and `probabilities`, and estimated before labels; without them it is
  refused at training (the gate's classification metrics need probabilities).

The class must be importable where the model is loaded (the loop's gate, `serve`, `reproduce`): it
is pickled by reference, like a class of `examples/` here (the editable install puts the project
root on the path). Deterministic given the seed, so `reproduce` rebuilds it bit-identically.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd


class SklearnPythonModel(mlflow.pyfunc.PythonModel):
    """A fitted scikit-learn classifier behind MLflow's `PythonModel`: labels from `predict`, class
    probabilities from `predict_proba` and `classes_`."""

    def __init__(self, model: Any):
        self.model = model
        self.classes_ = model.classes_

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> np.ndarray:
        return self.model.predict(model_input)

    def predict_proba(self, model_input: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(model_input)


def train(train: pd.DataFrame, validation: pd.DataFrame, spec: Any, seed: int) -> SklearnPythonModel:
    """The logistic pipeline of `examples.train_logistic.train`, wrapped in a `PythonModel`."""
    from examples.train_logistic import train as train_logistic

    return SklearnPythonModel(train_logistic(train, validation, spec, seed))
