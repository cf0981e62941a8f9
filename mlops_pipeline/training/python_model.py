"""A `model.train` function's `mlflow.pyfunc.PythonModel`, used by the loop like a fitted estimator.

In training (before it is logged) the returned `PythonModel` is used through `PythonModelFace`,
which gives it sklearn's calling conventions the way `serving.flavors.PyfuncModel` gives them to
the logged model once loaded: `predict(X)` is the model's `predict(context, model_input)` (one
answer per record), and for a classifier `predict_proba(X)` and `classes_` are the PythonModel's
own. So training, the gate (`deployment.scoring.load_version`), serving and `reproduce` all score
the same `predict_proba`, and the holdout scores a reproduction is compared with are bit-for-bit
what the registered version answers.

The positive class and a chosen decision threshold are saved as attributes on the PythonModel
itself (`model.set_positive_class`, `threshold.set_threshold` reach it through `get_raw_model`),
so they are pickled with it and serving reads them back (`flavors.PyfuncModel`). The model is
logged with `mlflow.pyfunc.log_model` (`logged_model.log_model`), its signature and input example
from the training frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def is_python_model(model: Any) -> bool:
    """Whether `model` is an `mlflow.pyfunc.PythonModel` (without importing mlflow)."""
    return any(c.__module__ == "mlflow.pyfunc.model" and c.__name__ == "PythonModel"
               for c in type(model).__mro__)


class PythonModelFace:
    """A `PythonModel` in this process with sklearn's calling conventions (see the module)."""

    flavor = "python_function"

    def __init__(self, python_model: Any):
        self.python_model = python_model

    @property
    def has_proba(self) -> bool:
        """Whether the PythonModel offers class probabilities (`predict_proba` and `classes_`)."""
        m = self.python_model
        return callable(getattr(m, "predict_proba", None)) and getattr(m, "classes_", None) is not None

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.python_model.classes_)

    def get_raw_model(self) -> Any:
        """The PythonModel: where the positive class and threshold are saved (pickled with it)."""
        return self.python_model

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        from mlops_pipeline.serving.flavors import call_with_input

        return np.asarray(call_with_input(self.python_model.predict_proba)(X), dtype=np.float64)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        from mlops_pipeline.serving.flavors import as_column, call_with_input

        return as_column(call_with_input(self.python_model.predict)(X))
