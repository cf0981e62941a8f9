"""`model.train: package.module:function`: the team's own training code, run by the loop.

The loop calls `function(train, validation, spec, seed)`:

- `train`, `validation`: DataFrames of the contract's feature columns (`spec.features.columns`,
  validated and coerced to the contract's dtypes, as serving will send them) plus the target column
  `spec.target.name`. The validation rows are carved from the train split by the content hash the
  decision threshold uses (`threshold.validation_mask`: `model.threshold.validation_fraction`,
  else 0.2), never from the holdout, which stays the gate's.
- `spec`: the `DatasetSpec` (`spec.model.params` are the function's to read); `seed`: the model seed.

It returns a fitted model that takes a DataFrame of the contract's feature columns, either
- scikit-learn compatible, i.e. `predict`, and for classification `predict_proba` and `classes_` (a
  fitted sklearn `Pipeline` that does its own preprocessing is the natural shape): logged through
  MLflow's sklearn flavor like the loop's own model, served on serving's sklearn fast path; or
- an `mlflow.pyfunc.PythonModel` (`training.python_model`): `predict(context, model_input)`, and for
  classification `predict_proba(model_input)` and `classes_` on it (see examples/train_pyfunc.py),
  logged with `mlflow.pyfunc` and loaded through it by the gate, serving and `reproduce`.
Either way the gate, drift, the estimates before labels (which need probabilities), explain and
`reproduce` use it unchanged. A classifier without class probabilities is refused in one line:
the gate's classification metrics need them.

The module must be importable wherever the loop trains or reproduces: in the project (like
`examples/`: the editable install puts the project root on the path) or on `PYTHONPATH`; and where
it is served if the model holds classes the module defines. `reproduce` calls the same function
with the same seed and frames, so a function deterministic given its seed reproduces bit-identically.
With `model.threshold` the threshold is chosen afterwards on the validation frame, with the
returned model.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def check_returned(model: Any, spec: Any) -> Any:
    """Refuse (one line) what the loop cannot log, gate and serve as its own model; returns the
    model as the loop uses it (a `PythonModel` behind `python_model.PythonModelFace`)."""
    from mlops_pipeline.training.python_model import PythonModelFace, is_python_model

    path = spec.model.train
    if is_python_model(model):
        face = PythonModelFace(model)
        if spec.task == "classification" and not face.has_proba:
            raise ValueError(f"model.train: {path} returned the PythonModel {type(model).__name__} "
                             "without predict_proba(model_input) and classes_ — the gate's "
                             "classification metrics need class probabilities")
        return face
    needed = ["predict"] + (["predict_proba"] if spec.task == "classification" else [])
    missing = [m for m in needed if not callable(getattr(model, m, None))]
    if spec.task == "classification" and not hasattr(model, "classes_"):
        missing.append("classes_")
    if missing:
        raise ValueError(f"model.train: {path} returned {type(model).__name__}, which has no "
                         f"{', '.join(missing)} — return a fitted scikit-learn-compatible model "
                         "taking the contract's feature columns, or an mlflow.pyfunc.PythonModel")
    return model


def fit_custom(X: pd.DataFrame, y: pd.Series, spec: Any, seed: int) -> tuple[Any, Any]:
    """Train with `model.train` on the contract-coerced train split `X`, `y`: the function gets the
    train and validation frames (see the module docstring). Returns the model, with its positive
    class (and, with `model.threshold`, its threshold chosen on the validation frame) saved on it,
    and its `ClassInfo` (None for regression)."""
    from mlops_pipeline.training.estimators import resolve_train
    from mlops_pipeline.training.model import set_positive_class
    from mlops_pipeline.training.threshold import set_threshold, validation_mask

    function = resolve_train(spec.model.train)
    mask = validation_mask(X, y, spec)
    target = spec.target.name
    labels = pd.Series(y).to_numpy()
    train = X[~mask].reset_index(drop=True).assign(**{target: labels[~mask]})
    validation = X[mask].reset_index(drop=True).assign(**{target: labels[mask]})
    model = check_returned(function(train, validation, spec, seed), spec)
    if spec.task != "classification":
        return model, None
    classes = set_positive_class(model, train[target], spec)
    if spec.model.threshold is not None:
        set_threshold(model, classes, X[mask], validation[target], spec)
        from mlops_pipeline.training.model import class_info

        classes = class_info(model)
    return model, classes
