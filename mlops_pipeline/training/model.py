"""The model is one scikit-learn Pipeline: every feature transform lives inside it.

Serving therefore needs nothing but the registered model: the raw contract columns go in, the same
transforms run in training and in production, and there is no second feature code path to drift
out of step (training/serving skew by construction is impossible).

Importing this module imports scikit-learn: asset bodies import it where they need it, so loading
the code location stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline


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
    "mlops_pipeline.training.model.DatetimeParts",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array",
)


def pip_requirements(extra: tuple[str, ...] = ()) -> list[str]:
    """The logged model's requirements, pinned to the versions installed here.

    Passed to `log_model` instead of letting MLflow infer them: in a uv project MLflow records the
    whole lockfile (~190 pins: Dagster, FastAPI, boto3...), which every later load then checks one
    by one, and outside one it re-imports the model in a subprocess (3-4 s here) to find these same few.
    """
    from importlib import metadata

    import mlflow.sklearn

    pins = mlflow.sklearn.get_default_pip_requirements(include_skops=True)
    pins += [f"{name}=={metadata.version(name)}" for name in (*RUNTIME_PACKAGES, *extra)]
    return sorted(pins)


# `spec` below is a `spec.DatasetSpec`, not imported: the spec checks `model.estimator` through
# `training.estimators`, which builds on this module.
def build_pipeline(spec: Any, seed: int | None = None) -> Pipeline:
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


#: Attribute of a fitted classification pipeline naming its positive class (set by
#: `set_positive_class`, saved with the model): what binary metrics and the served `probability`
#: refer to. A model without it (trained before it existed) has classes [0, 1] and positive 1.
POSITIVE_ATTR = "positive_class_"
#: Attribute of a fitted binary pipeline holding its chosen decision threshold (`model.threshold`,
#: `training.threshold`), saved with the model: `prediction` is the positive class when its
#: probability is at least this. Without it the rule stays the argmax (0.5).
THRESHOLD_ATTR = "decision_threshold_"


def _raw(model: Any) -> Any:
    """The sklearn estimator behind an MLflow pyfunc, or the model itself."""
    return model.get_raw_model() if hasattr(model, "get_raw_model") else model


def model_classes(model: Any) -> np.ndarray:
    """The classes of a fitted classifier in `predict_proba`'s column order (`classes_`)."""
    return np.asarray(_raw(model).classes_)


def to_python(value: Any) -> Any:
    """A numpy scalar as the plain Python value (str, int, bool, float) it stands for."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class ClassInfo:
    """The one home for "which classes, and which is positive" of a fitted classifier.

    `labels` are `classes_` as plain Python values, in probability-column order; `positive` is the
    positive class's column for a binary model, None for multi-class; `threshold` the chosen
    decision threshold of a binary model (None: the argmax, i.e. 0.5)."""

    labels: tuple
    positive: int | None
    threshold: float | None = None

    @property
    def binary(self) -> bool:
        return len(self.labels) == 2

    @property
    def positive_label(self) -> Any:
        return None if self.positive is None else self.labels[self.positive]


def class_info(model: Any) -> ClassInfo:
    """Classes and positive class of a fitted classifier (sklearn pipeline or MLflow sklearn flavor)."""
    raw = _raw(model)
    labels = tuple(to_python(c) for c in np.asarray(raw.classes_))
    if len(labels) != 2:
        return ClassInfo(labels, None)
    positive = getattr(raw, POSITIVE_ATTR, labels[1])
    matches = [i for i, c in enumerate(labels) if c == positive]
    threshold = getattr(raw, THRESHOLD_ATTR, None)
    return ClassInfo(labels, matches[0] if matches else 1, None if threshold is None else float(threshold))


def default_positive(y_train: pd.Series | np.ndarray, spec: Any) -> Any:
    """The positive class of a binary target: `target.positive` when set; for a derived target
    (an `expression`, 0/1) the class 1, i.e. the expression holding; otherwise the minority class of
    the training split, ties going to the last class in sorted order."""
    if spec.target.positive is not None:
        return spec.target.positive
    if spec.target.expression:
        return 1
    counts = pd.Series(np.asarray(y_train)).value_counts()
    counts = counts.sort_index(kind="stable")
    least = counts[counts == counts.min()]
    return to_python(least.index[-1])


def set_positive_class(model: Any, y_train: pd.Series | np.ndarray, spec: Any) -> ClassInfo:
    """Record the positive class on a fitted binary classifier (saved with it) and check the task.

    Raises ValueError naming the fix when the configured positive class is not a class of the
    training data, or a gate metric needs a binary target and this one has more classes."""
    from mlops_pipeline.training.metrics import metric_task_problem

    labels = tuple(to_python(c) for c in model_classes(model))
    if len(labels) < 2:
        raise ValueError(f"target '{spec.target.name}' has one class in the training split: {labels}")
    for metric in spec.gate:
        problem = metric_task_problem(metric, spec.task, len(labels))
        if problem:
            raise ValueError(problem)
    if len(labels) == 2:
        positive = default_positive(y_train, spec)
        if positive not in labels:
            raise ValueError(f"target.positive {positive!r} is not a class of '{spec.target.name}' "
                             f"(classes: {list(labels)})")
        setattr(_raw(model), POSITIVE_ATTR, positive)
    elif spec.target.positive is not None and spec.target.positive not in labels:
        raise ValueError(f"target.positive {spec.target.positive!r} is not a class of "
                         f"'{spec.target.name}' (classes: {list(labels)})")
    return class_info(model)


#: Rows scored per model call. The pipeline transforms its whole input at once (8 bytes a feature
#: a row, copied as the columns are joined), so a holdout of millions of rows is scored in slices
#: of this many: the same scores, with memory bounded by the slice instead of the holdout.
PREDICT_CHUNK_ROWS = 250_000


def predict_scores(model: Any, X: pd.DataFrame, task: str, chunk_rows: int | None = None) -> np.ndarray:
    """Positive-class probability (1-D) for a binary classifier, the (n, k) probability matrix in
    `classes_` order for a multi-class one, the value for regression.

    Works for a fitted sklearn Pipeline and for an MLflow pyfunc wrapping one, so the gate scores
    the registered champion exactly as serving will. Scored `chunk_rows` (default
    `PREDICT_CHUNK_ROWS`) rows at a time: every transform and the model score a row on its own, so
    the result is exactly the whole frame's.
    """
    step = chunk_rows or PREDICT_CHUNK_ROWS
    if len(X) > step:
        return np.concatenate([_scores(model, X.iloc[i:i + step], task) for i in range(0, len(X), step)])
    return _scores(model, X, task)


def _scores(model: Any, X: pd.DataFrame, task: str) -> np.ndarray:
    if task == "classification":
        raw = model if hasattr(model, "predict_proba") else _raw(model)
        proba = np.asarray(raw.predict_proba(X))
        if proba.shape[1] == 2:
            return proba[:, class_info(raw).positive]
        return proba
    return np.asarray(model.predict(X), dtype="float64")


def class_name(label: Any) -> str:
    """A class as text, the same whether it comes from the model (3) or the prediction store (3.0):
    how a multi-class prediction column is compared as a category."""
    label = to_python(label)
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def drift_scores(model: Any, X: pd.DataFrame, task: str) -> np.ndarray:
    """The one prediction column drift watches: the numeric score for binary and regression, the
    predicted class as text (`class_name`, a category) for multi-class, and for a classifier
    without class probabilities (`has_proba` false: a pyfunc answering labels only) its predicted
    labels as text, so its prediction drift is still measured."""
    if task == "classification" and getattr(model, "has_proba", True) is False:
        return np.asarray([class_name(c) for c in np.asarray(model.predict(X)).tolist()], dtype=object)
    scores = predict_scores(model, X, task)
    if scores.ndim == 2:
        names = np.asarray([class_name(c) for c in class_info(model).labels], dtype=object)
        return names[scores.argmax(axis=1)]
    return scores


def compute_metrics(task: str, y_true: pd.Series | np.ndarray, scores: np.ndarray,
                    classes: ClassInfo | None = None) -> dict[str, float]:
    """Holdout metrics. Binary (1-D scores, the positive class's probability): roc_auc, log_loss,
    brier, f1, macro_f1, accuracy. Multi-class ((n, k) scores in `classes` order): log_loss,
    macro_f1, accuracy and one-vs-rest macro roc_auc. Regression: mae, rmse, r2.

    `classes` defaults to [0, 1] with positive 1 (a derived 0/1 target)."""
    from sklearn import metrics as m

    y = np.asarray(y_true)
    if task != "classification":
        return {
            "mae": float(m.mean_absolute_error(y, scores)),
            "rmse": float(np.sqrt(m.mean_squared_error(y, scores))),
            "r2": float(m.r2_score(y, scores)),
        }
    scores = np.asarray(scores, dtype="float64")
    if classes is None:
        classes = ClassInfo((0, 1), 1)
        y = y.astype(int)
    y = _align(y, classes.labels)
    if scores.ndim == 1:
        pidx = 1 if classes.positive is None else classes.positive
        codes = _codes(y, classes.labels)
        pos = (codes == pidx).astype(int)
        cut = 0.5 if classes.threshold is None else classes.threshold
        hard = np.where(scores >= cut, pidx, 1 - pidx)
        clipped = np.clip(scores, 1e-7, 1 - 1e-7)
        return {
            "roc_auc": float(m.roc_auc_score(pos, scores)) if len(np.unique(pos)) > 1 else float("nan"),
            "log_loss": float(m.log_loss(pos, clipped, labels=[0, 1])),
            "brier": float(m.brier_score_loss(pos, scores)),
            "f1": float(m.f1_score(pos, (scores >= cut).astype(int), zero_division=0)),
            "macro_f1": float(m.f1_score(codes, hard, average="macro", labels=[0, 1], zero_division=0)),
            "accuracy": float(np.mean(pos == (scores >= cut))),
        }
    codes = _codes(y, classes.labels)
    k = len(classes.labels)
    known = codes >= 0
    clipped = np.clip(scores, 1e-7, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    hard = scores.argmax(axis=1)
    present = np.unique(codes[known])
    try:
        auc = float(m.roc_auc_score(codes[known], scores[known], multi_class="ovr", average="macro",
                                    labels=list(range(k)))) if len(present) == k else float("nan")
    except ValueError:
        auc = float("nan")
    return {
        "log_loss": float(m.log_loss(codes[known], clipped[known], labels=list(range(k))))
        if known.any() else float("nan"),
        "macro_f1": float(m.f1_score(codes, hard, average="macro", labels=list(range(k)),
                                     zero_division=0)),
        "accuracy": float(np.mean(codes == hard)),
        "roc_auc": auc,
    }


def _align(y: np.ndarray, labels: tuple) -> np.ndarray:
    """Labels as the classes' own type where they only differ in representation (3.0 for 3)."""
    if y.dtype.kind == "f" and all(isinstance(c, int | np.integer) and not isinstance(c, bool)
                                   for c in labels):
        return y.astype("int64")
    return y


def _codes(y: np.ndarray, labels: tuple) -> np.ndarray:
    """Each label's column in `labels` (-1 for a class the model does not know)."""
    return pd.Index(list(labels)).get_indexer(pd.Index(y)).astype(np.int64)
