"""Training proper, without Dagster or MLflow: fit the pipeline on the train split, score the
holdout, and build the drift reference.

Shared by the `trained_model` asset, `mlops-pipeline reproduce` and the loop benchmark's plain
baseline, so a reproduction or a baseline runs exactly the code that trained a registered version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Fitted:
    """`fit_and_score`'s result: the fitted pipeline, the validated splits, holdout scores and metrics."""

    model: Any
    X_train: pd.DataFrame
    X_hold: pd.DataFrame
    y_hold: pd.Series
    scores: Any  # holdout predictions (positive-class probability, (n, k) matrix, or value)
    metrics: dict[str, float]
    classes: Any = None  # model.ClassInfo for classification
    sample: Any = None  # data.features.TrainingSample: which train rows were fitted on


def fit_and_score(df: pd.DataFrame, spec: Any, seed: int, shuffle_labels: bool = False) -> Fitted:
    """`fit_parts` on a prepared frame in memory (`prepare(...).frame`), the train split bounded
    by `model.max_train_rows` exactly as the stored table's reader bounds it (`sample_train`)."""
    from mlops_pipeline.data.features import sample_train
    from mlops_pipeline.data.preparation import SPLIT_COLUMN

    train, sample = sample_train(df, spec, seed)
    return fit_parts(train, df[df[SPLIT_COLUMN] == "holdout"], spec, seed, shuffle_labels, sample)


def fit_parts(train: pd.DataFrame, holdout: pd.DataFrame, spec: Any, seed: int,
              shuffle_labels: bool = False, sample: Any = None) -> Fitted:
    """The training step proper, shared by the asset and `mlops-pipeline reproduce`, so that a
    reproduction runs exactly the code (contract coercion, seeding, label shuffling) that trained
    the registered version instead of a look-alike. `train` and `holdout` hold at least the
    features and the target; the holdout is scored in full."""
    from mlops_pipeline.training.estimators import build_model
    from mlops_pipeline.training.model import class_info, compute_metrics, predict_scores, set_positive_class

    X_train, y_train = training_xy(train, spec, seed, shuffle_labels)
    X_hold, y_hold = training_xy(holdout, spec, seed)
    if spec.model.train is not None:
        # The team's own training function (`model.train`), given train and validation frames.
        from mlops_pipeline.training.custom import fit_custom

        model, classes = fit_custom(X_train, y_train, spec, seed)
    elif spec.model.threshold is not None:
        # The threshold is chosen on validation rows carved from the train split (never the
        # holdout), so the model is fitted on the rest of it.
        from mlops_pipeline.training.threshold import fit_with_threshold

        model, _ = fit_with_threshold(lambda: build_model(spec, seed), X_train, y_train, spec)
        classes = class_info(model)
    else:
        model = build_model(spec, seed=seed).fit(X_train, y_train)
        classes = set_positive_class(model, y_train, spec) if spec.task == "classification" else None
    scores = predict_scores(model, X_hold, spec.task)
    metrics = compute_metrics(spec.task, y_hold, scores, classes)
    return Fitted(model, X_train, X_hold, y_hold, scores, metrics, classes, sample)


def training_xy(frame: pd.DataFrame, spec: Any, seed: int,
                shuffle_labels: bool = False) -> tuple[pd.DataFrame, pd.Series]:
    """Features (validated and coerced to the contract's dtypes) and target of a split, the labels
    permuted by `seed` with `shuffle_labels`: what training (and `model.search`'s trials) fit on."""
    import numpy as np

    from mlops_pipeline.data.contract import load_contract, validate
    from mlops_pipeline.data.preparation import xy

    features = load_contract(spec).for_columns(spec.features.columns)
    X, y = xy(frame, spec)
    X = validate(X, features)
    if shuffle_labels:
        y = pd.Series(np.random.default_rng(seed).permutation(y.to_numpy()))
    return X, y


def drift_reference(model: Any, X_train: pd.DataFrame, task: str) -> pd.DataFrame:
    """What drift is measured against once this model is champion: its contract-coerced training
    features plus its own predictions on them. Built here, where the model and the split are in
    memory, and stored once per run: monitoring then reads it instead of re-reading the snapshot,
    re-preparing it and re-scoring it (every drift report and every production day did that).
    The prediction is `model.drift_scores`: a number, or the predicted class for multi-class."""
    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN
    from mlops_pipeline.training.model import drift_scores

    reference = X_train.reset_index(drop=True)
    reference[PREDICTION_COLUMN] = drift_scores(model, reference, task)
    return reference


def performance_estimator(fitted: Fitted, spec: Any, seed: int) -> Any:
    """The version's label-free performance estimator (`monitoring.estimation`), fitted on its
    holdout: calibrators of its probabilities (classification) or models of its loss (regression).
    Built here beside the drift reference and stored with the version the same way."""
    from mlops_pipeline.monitoring.estimation_fit import fit_estimator

    return fit_estimator(fitted.model, fitted.X_hold, fitted.y_hold, fitted.scores, spec.task,
                         fitted.classes, seed, groups=holdout_days(fitted.X_hold, spec))


def holdout_days(X_hold: pd.DataFrame, spec: Any) -> Any:
    """The holdout rows' calendar day (the production assets' partition), or None without a
    time column among the features."""
    column = spec.time_column
    if not column or column not in X_hold.columns:
        return None
    return pd.to_datetime(X_hold[column]).dt.strftime("%Y-%m-%d").to_numpy()
