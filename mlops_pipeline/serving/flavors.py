"""Any registered MLflow model behind one face: `predict(X)`, and `predict_proba(X)` + `classes_`
when the model offers class probabilities.

- **sklearn flavor** (what the loop registers): `mlflow.sklearn.load_model`, the estimator itself;
  the fast path, no wrapper.
- **every other flavor** (xgboost, lightgbm, a `PythonModel` from a notebook, ...):
  `mlflow.pyfunc.load_model`, wrapped in `PyfuncModel`. Class probabilities come from the model
  underneath when it has them: the flavor's raw model (`get_raw_model()`, e.g. an `XGBClassifier`)
  or a `PythonModel` that defines `predict_proba(model_input)` and `classes_`. Without them the
  model answers `pyfunc.predict`'s output: a number per record (served as a value), or a label.
  A `model.train` function's `PythonModel` (training.python_model) is served this way, its
  positive class and decision threshold read from the attributes the loop saved on it.

`LoadedModel.score` (serving.loader) is the one place a served `prediction` is derived from
probabilities, whatever the flavor.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import numpy as np
import pandas as pd

#: Flavors loaded natively rather than through pyfunc.
SKLEARN = "sklearn"
PYFUNC = "python_function"
_NUMERIC = ("integer", "long", "float", "double")


class PyfuncModel:
    """A model of any flavor, loaded with `mlflow.pyfunc`, with sklearn's calling conventions.

    `columns` (the signature's inputs, in order) are what the model is given, so a contract with
    more columns than the model uses still serves it. `proba_source` is the object whose
    `predict_proba`/`classes_` give class probabilities, or None."""

    def __init__(self, pyfunc: Any, flavor: str, columns: list[str] | None = None,
                 dtypes: dict[str, Any] | None = None):
        self.pyfunc = pyfunc
        self.flavor = flavor
        self.columns = columns
        self.dtypes = dtypes or {}  # numeric signature columns: cast to the model's exact type
        self.proba_source = probability_source(pyfunc)
        if self.proba_source is not None:
            from mlops_pipeline.training.model import POSITIVE_ATTR, THRESHOLD_ATTR

            self.classes_ = np.asarray(self.proba_source.classes_)
            for attr in (POSITIVE_ATTR, THRESHOLD_ATTR):  # read by model.class_info when present
                if (value := getattr(self.proba_source, attr, None)) is not None:
                    setattr(self, attr, value)
            self._proba = call_with_input(self.proba_source.predict_proba)

    @property
    def has_proba(self) -> bool:
        return self.proba_source is not None

    def _input(self, X: pd.DataFrame) -> pd.DataFrame:
        """The model's own columns in its order, numbers in its signature's exact types (MLflow
        refuses an int64 column for an `integer` input, and float for int)."""
        if self.columns and list(X.columns) != self.columns:
            X = X[self.columns]
        cast = {c: t for c, t in self.dtypes.items() if c in X.columns and X[c].dtype != t}
        return X.astype(cast) if cast else X

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.proba_source is None:
            raise AttributeError(f"this {self.flavor} model offers no class probabilities")
        return np.asarray(self._proba(self._input(X)), dtype=np.float64)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return as_column(self.pyfunc.predict(self._input(X)))


def call_with_input(fn: Any) -> Any:
    """`fn(X)`; a PythonModel-style `fn(context, X)` is given `None` as its context."""
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.default is inspect.Parameter.empty
                  and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return fn
    return (lambda X: fn(None, X)) if len(params) >= 2 else fn


def probability_source(pyfunc: Any) -> Any:
    """What offers class probabilities under a pyfunc model: the flavor's raw model, or the
    `PythonModel` itself, when it has both `predict_proba` and `classes_`; else None."""
    candidates = []
    with contextlib.suppress(Exception):  # flavors without a raw model
        candidates.append(pyfunc.get_raw_model())
    with contextlib.suppress(Exception):  # not a PythonModel
        candidates.append(pyfunc.unwrap_python_model())
    for c in candidates:
        if callable(getattr(c, "predict_proba", None)) and getattr(c, "classes_", None) is not None:
            return c
    return None


def as_column(output: Any) -> np.ndarray:
    """One answer per record from what `pyfunc.predict` returned (array, Series, one-column frame
    or list); refuses a shape that is not one value per record."""
    if isinstance(output, pd.DataFrame):
        if output.shape[1] != 1:
            raise ValueError(f"the model answers {output.shape[1]} columns per record "
                             f"({list(output.columns)[:5]}); serving needs one prediction per record")
        output = output.iloc[:, 0]
    arr = np.asarray(output)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"the model answers shape {arr.shape}; serving needs one prediction per record")
    return arr


def flavors_of(local: str) -> dict[str, Any]:
    """The flavors in a downloaded model's MLmodel file."""
    from mlflow.models import Model

    return dict(Model.load(local).flavors)


def load_local(local: str) -> tuple[Any, str, str]:
    """(model, task, flavor) of a downloaded model directory: the sklearn fast path when the model
    has that flavor, `mlflow.pyfunc` for any other. `task` is classification when the model gives
    class probabilities, else regression (a numeric answer per record)."""
    import mlflow

    flavors = flavors_of(local)
    if SKLEARN in flavors:
        from sklearn.base import is_classifier

        model = mlflow.sklearn.load_model(local)
        proba = is_classifier(model) and hasattr(model, "predict_proba")
        return model, "classification" if proba else "regression", SKLEARN
    if PYFUNC not in flavors:
        raise ValueError(f"model has no python_function flavor (flavors: {sorted(flavors)}): "
                         "serving loads sklearn models natively and every other through mlflow.pyfunc")
    pyfunc = mlflow.pyfunc.load_model(local)
    flavor = next((f for f in flavors if f != PYFUNC), PYFUNC)
    if flavor == PYFUNC and (loader := flavors[PYFUNC].get("loader_module")):
        flavor = str(loader).rsplit(".", 1)[-1] if loader != "mlflow.pyfunc.model" else PYFUNC
    schema = pyfunc.metadata.get_input_schema()
    columns = dtypes = None
    if schema is not None and schema.has_input_names():
        columns = [str(c) for c in schema.input_names()]
        dtypes = {str(c.name): np.dtype(c.type.to_numpy()) for c in schema.inputs
                  if getattr(c.type, "name", "") in _NUMERIC}
    model = PyfuncModel(pyfunc, flavor, columns, dtypes)
    return model, "classification" if model.has_proba else "regression", flavor
