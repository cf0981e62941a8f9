"""The model is one scikit-learn Pipeline: every feature transform lives inside it.

Serving therefore needs nothing but the registered model: the raw contract columns go in, the same
transforms run in training and in production, and there is no second feature code path to drift
out of step (training/serving skew by construction is impossible).

Importing this module imports scikit-learn: asset bodies import it where they need it, so loading
the code location stays fast.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from mlops_pipeline.settings import DatasetSpec


class DatetimeParts(TransformerMixin, BaseEstimator):
    """Expands a timestamp column into numeric parts (weekday, hour...) inside the pipeline."""

    def __init__(self, parts: list[str] | tuple[str, ...] = ("dayofweek",)):
        self.parts = parts

    def fit(self, X: pd.DataFrame, y: Any = None) -> DatetimeParts:
        self.columns_ = list(X.columns)
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        out = []
        for col in self.columns_:
            ts = X[col]
            # Parse only what is not a timestamp yet: on a datetime64 column of more than 50 rows,
            # pd.to_datetime's caching heuristic builds 10k Timestamp objects to decide it needs
            # no cache (~8 ms per call: ~10% of scoring a 10k-row batch).
            if not pd.api.types.is_datetime64_any_dtype(ts):
                ts = pd.to_datetime(ts)
            out.extend(getattr(ts.dt, part).to_numpy(dtype="float64") for part in self.parts)
        return np.column_stack(out)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array([f"{c}_{p}" for c in self.columns_ for p in self.parts], dtype=object)


#: What loading and calling the pipeline imports besides scikit-learn, skops (its file format) and
#: MLflow, which the flavor pins itself. The same set MLflow's import-capturing inference finds,
#: without its incidental hits (pytest and rich, optional imports of scikit-learn; psutil, of
#: MLflow's tracing) and without this project (`DatetimeParts`), which serving runs from.
RUNTIME_PACKAGES = ("numpy", "pandas", "scipy")


#: The types in a fitted pipeline that skops does not trust by default, trusted by name when the
#: model is saved and loaded: HistGradientBoosting's trees (`TreePredictor`), the
#: `partial(check_array, ...)` its preprocessor keeps when there are categorical features, and our
#: `DatetimeParts`. A fixed list, not "whatever the dump contains" (which trusts anything a model
#: happens to hold), so a pipeline that grows a new type fails at `log_model` naming that type.
SKOPS_TRUSTED_TYPES = (
    "functools.partial",
    "mlops_pipeline.model.DatetimeParts",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
)


def pip_requirements() -> list[str]:
    """The logged model's requirements, pinned to the versions installed here.

    Passed to `log_model` instead of letting MLflow infer them: in a uv project MLflow records the
    whole lockfile (~190 pins: Dagster, FastAPI, boto3...), which every later load then checks one
    by one, and outside one it re-imports the model in a subprocess (3-4 s here) to find these same few.
    """
    from importlib import metadata

    import mlflow.sklearn

    pins = mlflow.sklearn.get_default_pip_requirements(include_skops=True)
    pins += [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]
    return sorted(pins)


def build_pipeline(spec: DatasetSpec, seed: int | None = None) -> Pipeline:
    """Column transforms + HistGradientBoosting (native categorical support, handles NaN)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.preprocessing import OrdinalEncoder

    f = spec.features
    transformers: list[tuple[str, Any, list[str]]] = []
    if f.categorical:
        # Unseen categories (a new airline, a new airport) become "missing", which the trees
        # route like any other missing value, instead of failing the request.
        encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=np.nan,
            encoded_missing_value=np.nan,
            max_categories=250,
            dtype=np.float64,
        )
        transformers.append(("categorical", encoder, list(f.categorical)))
    if f.numerical:
        transformers.append(("numerical", "passthrough", list(f.numerical)))
    for col, parts in f.datetime_parts.items():
        transformers.append((f"datetime_{col}", DatetimeParts(parts=list(parts)), [col]))
    columns = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    categorical_idx = list(range(len(f.categorical))) or None
    params = {k: v for k, v in spec.model.params.items() if v is not None}
    rng = spec.model.seed if seed is None else seed
    if spec.task == "classification":
        estimator = HistGradientBoostingClassifier(
            categorical_features=categorical_idx, random_state=rng, **params
        )
    else:
        estimator = HistGradientBoostingRegressor(
            categorical_features=categorical_idx, random_state=rng, **params
        )
    return Pipeline([("features", columns), ("model", estimator)])


def predict_scores(model: Any, X: pd.DataFrame, task: str) -> np.ndarray:
    """Positive-class probability for classification, the value for regression.

    Works for a fitted sklearn Pipeline and for an MLflow pyfunc wrapping one, so the gate scores
    the registered champion exactly as serving will.
    """
    if task == "classification":
        if hasattr(model, "predict_proba"):
            return np.asarray(model.predict_proba(X))[:, 1]
        raw = model.get_raw_model() if hasattr(model, "get_raw_model") else model
        return np.asarray(raw.predict_proba(X))[:, 1]
    return np.asarray(model.predict(X), dtype="float64")


def compute_metrics(task: str, y_true: pd.Series | np.ndarray, scores: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as m

    y = np.asarray(y_true)
    if task == "classification":
        y = y.astype(int)
        clipped = np.clip(scores, 1e-7, 1 - 1e-7)
        return {
            "roc_auc": float(m.roc_auc_score(y, scores)) if len(np.unique(y)) > 1 else float("nan"),
            "log_loss": float(m.log_loss(y, clipped, labels=[0, 1])),
            "brier": float(m.brier_score_loss(y, scores)),
            "f1": float(m.f1_score(y, (scores >= 0.5).astype(int), zero_division=0)),
        }
    return {
        "mae": float(m.mean_absolute_error(y, scores)),
        "rmse": float(np.sqrt(m.mean_squared_error(y, scores))),
        "r2": float(m.r2_score(y, scores)),
    }
