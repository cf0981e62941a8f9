"""`model.estimator`: any scikit-learn-compatible estimator, with the preprocessing that fits it.

Without `model.estimator` the model is `model.build_pipeline`'s (unchanged). With it, the model is
still one sklearn Pipeline (contract columns in, every transform inside), so serving, the gate and
`reproduce` treat it exactly like the default:

- `onehot` (auto for linear and other non-tree models): categoricals one-hot encoded (unknown
  categories ignored), numbers imputed (median, with a missing indicator) and standardized;
- `ordinal` (auto for tree models and the boosters): categoricals as ordinal codes, unknown ->
  missing, like the default pipeline; for lightgbm/xgboost the codes are handed over as pandas
  categoricals (`NativeCategoricals`), so the boosters split on them natively.

Also the config-load checks of `model.train` (`resolve_train`: the function exists) and of
`model.search`'s space (`check_space`: the estimator has those parameters); `training.custom` and
`training.search` run them. Here, not there, because the spec's validators may only import modules
that do not import the spec back.

Heavy imports (scikit-learn, the boosters) happen inside the functions that use them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

#: Packages whose estimators take pandas categoricals natively (and whose fitted models hold their
#: own booster types, trusted by name in `skops_trusted_types`).
BOOSTERS = ("lightgbm", "xgboost")

#: The types a fitted booster holds that skops does not trust by default, by package. The choice is
#: skops with named types, not pickle: loading a registered model still cannot run arbitrary code,
#: and a booster that grows a new type fails at `log_model` naming it.
BOOSTER_TRUSTED_TYPES = {
    "lightgbm": ("collections.OrderedDict", "lightgbm.basic.Booster"),
    "xgboost": ("xgboost.core.Booster",),
}

#: Categories each native categorical column may take: the ordinal codes of at most
#: `MAX_CATEGORIES` categories plus the infrequent bucket. Fixed, so training and serving agree.
MAX_CATEGORIES = 250


def resolve(path: str) -> type:
    """The estimator class at import path `path` (`package.module.Class`); ValueError naming it."""
    import importlib

    module_name, _, name = path.rpartition(".")
    if not module_name:
        raise ValueError(f"model.estimator: {path!r} is not an import path — use e.g. "
                         "sklearn.linear_model.LogisticRegression")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model.estimator: cannot import {module_name!r} ({exc}) — check the path "
                         "or install the package") from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type) or not hasattr(cls, "fit") or not hasattr(cls, "get_params"):
        raise ValueError(f"model.estimator: {path!r} is not a scikit-learn-compatible estimator "
                         "class (needs fit and get_params)")
    return cls


def resolve_train(path: str) -> Callable[..., Any]:
    """The function at `package.module:function`; ValueError (one line) naming what is wrong."""
    import importlib

    module_name, sep, name = path.partition(":")
    if not sep or not module_name.strip() or not name.strip():
        raise ValueError(f"model.train: {path!r} is not package.module:function — e.g. "
                         "examples.train_logistic:train")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the user's to fix, in one line
        message = " ".join(str(exc).split())
        raise ValueError(f"model.train: cannot import {module_name!r} ({type(exc).__name__}: "
                         f"{message}) — the module must be importable: in the project or on "
                         "PYTHONPATH") from None
    function = getattr(module, name, None)
    if function is None:
        raise ValueError(f"model.train: module {module_name!r} has no {name!r}")
    if isinstance(function, type) or not callable(function):
        raise ValueError(f"model.train: {path} is not a function (it must take train, validation, "
                         "spec, seed and return a fitted model)")
    return function


#: Parameters the default pipeline sets itself (not searchable).
DEFAULT_PIPELINE_OWN = frozenset({"categorical_features", "random_state"})


def _accepted(estimator: str | None) -> tuple[str, set[str]]:
    """The estimator's name and the parameters a search may set."""
    if estimator is not None:
        from mlops_pipeline.training.estimators import resolve

        cls = resolve(estimator)
        return cls.__name__, set(cls().get_params())
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    accepted = set(HistGradientBoostingClassifier().get_params())
    accepted |= set(HistGradientBoostingRegressor().get_params())
    return "the default HistGradientBoosting model", accepted - DEFAULT_PIPELINE_OWN


def check_space(estimator: str | None, search: Any) -> None:
    """ValueError (one line) when `model.search.space` names a parameter the estimator lacks."""
    name, accepted = _accepted(estimator)
    unknown = sorted(set(search.space) - accepted)
    if unknown:
        raise ValueError(f"model.search.space: {unknown} not parameters of {name} — use some of "
                         f"{sorted(accepted)}")


def check_estimator(path: str, params: dict[str, Any]) -> Any:
    """The configured estimator, built: ValueError (one line) for a wrong path, an unknown
    parameter or, for scikit-learn's own estimators, a parameter value it rejects."""
    cls = resolve(path)
    given = {k: v for k, v in params.items() if v is not None}
    accepted = set(cls().get_params())
    unknown = sorted(set(given) - accepted)
    if unknown:
        raise ValueError(f"model.params: {unknown} not parameters of {cls.__name__} — use some of "
                         f"{sorted(accepted)}")
    estimator = cls(**given)
    validate = getattr(estimator, "_validate_params", None)
    if callable(validate) and hasattr(estimator, "_parameter_constraints"):
        try:
            validate()
        except (ValueError, TypeError) as exc:
            message = " ".join(str(exc).split())
            raise ValueError(f"model.params: {message}") from None
    return estimator


def kind(estimator: Any) -> str:
    """`classification` or `regression`, as scikit-learn tags the estimator."""
    from sklearn.base import is_classifier

    return "classification" if is_classifier(estimator) else "regression"


def _package(estimator: Any) -> str:
    return type(estimator).__module__.split(".")[0]


def is_tree_model(estimator: Any) -> bool:
    """A booster or a tree ensemble, which wants ordinal codes rather than one-hot and scaling."""
    name = type(estimator).__name__
    return _package(estimator) in BOOSTERS or any(w in name for w in ("Tree", "Forest", "Boost"))


def preprocessing_for(estimator: Any, choice: str) -> str:
    """`ordinal` or `onehot`: the configured one, or for `auto` the one that fits the estimator."""
    if choice != "auto":
        return choice
    return "ordinal" if is_tree_model(estimator) else "onehot"


class NativeCategoricals(TransformerMixin, BaseEstimator):
    """The first `n_categorical` columns (ordinal codes, NaN for missing or unknown) as pandas
    categoricals with fixed categories, the rest as floats: what lightgbm and xgboost split on
    natively. Columns are named `f0`, `f1`... (boosters reject some characters in names)."""

    def __init__(self, n_categorical: int = 0):
        self.n_categorical = n_categorical

    def fit(self, X: Any, y: Any = None) -> NativeCategoricals:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: Any) -> pd.DataFrame:
        values = np.asarray(X, dtype="float64")
        frame = pd.DataFrame(values, columns=[f"f{i}" for i in range(values.shape[1])])
        categories = np.arange(MAX_CATEGORIES + 1, dtype="int64")  # xgboost rejects float ones
        for i in range(self.n_categorical):
            codes = np.where(np.isnan(values[:, i]), -1, values[:, i]).astype("int64")
            frame[f"f{i}"] = pd.Categorical.from_codes(codes, categories=categories)
        return frame


def build_estimator_pipeline(spec: Any, seed: int | None = None) -> Any:
    """The Pipeline of `model.estimator` with `model.params`, behind the preprocessing that fits it."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    from mlops_pipeline.training.model import DatetimeParts

    m = spec.model
    estimator = check_estimator(m.estimator, m.params)
    rng = m.seed if seed is None else seed
    own = estimator.get_params()
    if "random_state" in own and "random_state" not in m.params:
        estimator.set_params(random_state=rng)
    if _package(estimator) == "xgboost" and own.get("enable_categorical") is not True:
        estimator.set_params(enable_categorical=True)
    if _package(estimator) == "lightgbm" and "verbose" not in m.params:
        estimator.set_params(verbose=-1)
    f = spec.features
    how = preprocessing_for(estimator, m.preprocessing)
    transformers: list[tuple[str, Any, list[str]]] = []
    if f.categorical and how == "onehot":
        encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_CATEGORIES,
                                sparse_output=False)
        transformers.append(("categorical", encoder, list(f.categorical)))
    elif f.categorical:
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                 encoded_missing_value=np.nan, max_categories=MAX_CATEGORIES,
                                 dtype=np.float64)
        transformers.append(("categorical", encoder, list(f.categorical)))
    scale = how == "onehot"
    if f.numerical:
        numbers = (make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                 StandardScaler()) if scale else "passthrough")
        transformers.append(("numerical", numbers, list(f.numerical)))
    for col, parts in f.datetime_parts.items():
        step = DatetimeParts(parts=list(parts))
        scaled = make_pipeline(step, SimpleImputer(strategy="median"), StandardScaler())
        transformers.append((f"datetime_{col}", scaled if scale else step, [col]))
    columns = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    steps: list[tuple[str, Any]] = [("features", columns)]
    if how == "ordinal" and _package(estimator) in BOOSTERS:
        steps.append(("categoricals", NativeCategoricals(len(f.categorical))))
    steps.append(("model", estimator))
    return Pipeline(steps)


def build_model(spec: Any, seed: int | None = None) -> Any:
    """The unfitted model of a spec: `model.estimator`'s pipeline, or the default one."""
    if spec.model.estimator is None:
        from mlops_pipeline.training.model import build_pipeline

        return build_pipeline(spec, seed=seed)
    return build_estimator_pipeline(spec, seed)


def final_estimator(model: Any) -> Any:
    """The estimator at the end of a (fitted) pipeline, or the model itself."""
    raw = model.get_raw_model() if hasattr(model, "get_raw_model") else model
    steps = getattr(raw, "steps", None)
    return steps[-1][1] if steps else raw


def skops_trusted_types(model: Any, dumped: bool = False) -> list[str]:
    """What `log_model` trusts for this model: the default pipeline's fixed list, plus for another
    estimator `numpy.dtype`, and for a booster its own class, its booster types and
    `NativeCategoricals` (all named, none guessed from the dump). `dumped` (a model the team's
    `model.train` function built) adds the types skops finds in the model's own dump: the loader
    then accepts exactly those, so a tampered artifact holding another type is still refused."""
    from mlops_pipeline.training.model import SKOPS_TRUSTED_TYPES

    trusted = list(SKOPS_TRUSTED_TYPES)
    estimator = final_estimator(model)
    package = _package(estimator)
    if not type(estimator).__name__.startswith("HistGradientBoosting"):
        trusted.append("numpy.dtype")  # SimpleImputer's fitted dtype (one-hot preprocessing)
    if package in BOOSTERS:
        trusted += [f"{type(estimator).__module__}.{type(estimator).__qualname__}",
                    *BOOSTER_TRUSTED_TYPES[package],
                    f"{NativeCategoricals.__module__}.{NativeCategoricals.__qualname__}"]
    if dumped:
        import skops.io

        trusted += skops.io.get_untrusted_types(data=skops.io.dumps(model))
    return sorted(set(trusted))


def runtime_packages(model: Any) -> tuple[str, ...]:
    """Packages the logged model needs at load beyond the default pipeline's (the booster's)."""
    package = _package(final_estimator(model))
    return (package,) if package in BOOSTERS else ()


def model_description(spec: Any, model: Any) -> str:
    """What was trained, in one line, for any model: the default pipeline, `model.estimator`
    behind its preprocessing, or `model.train`'s function and the class it returned (a
    `PythonModel` is logged with mlflow.pyfunc, anything else with the sklearn flavor)."""
    raw = model.get_raw_model() if hasattr(model, "get_raw_model") else model
    name = type(final_estimator(model)).__name__
    if spec.model.train is not None:
        flavor = "mlflow.pyfunc" if getattr(model, "flavor", "") == "python_function" else "sklearn flavor"
        return f"model.train {spec.model.train}: {type(raw).__name__} ({flavor})"
    if spec.model.estimator is not None:
        return f"model.estimator {name} ({spec.model.preprocessing} preprocessing)"
    return f"default pipeline: {name}"
