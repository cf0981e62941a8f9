"""A `model.train` function: the team's own training code, run by the loop (`training.custom`).

Use it with `model: {train: examples.train_logistic:train}` (see examples/fair_train.yaml). The loop
calls it with the train and validation frames (the contract's feature columns plus the target),
the dataset spec and the seed; it returns a fitted scikit-learn Pipeline that takes the contract's
feature columns, so the loop logs, gates, registers, serves and reproduces it like its own model.

Here: numbers imputed and scaled, categoricals one-hot encoded, and a logistic regression whose
regularization `C` is picked on the validation frame among `model.params.C_grid` (default
[0.01, 0.1, 1, 10]) by ROC AUC, then refitted on train + validation. Deterministic given the seed,
so `mlops-pipeline reproduce` rebuilds it bit-identically.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def _pipeline(spec: Any, C: float, seed: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    f = spec.features
    columns = ColumnTransformer([
        ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
         list(f.numerical)),
        ("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
         list(f.categorical)),
    ], remainder="drop")
    model = LogisticRegression(C=C, max_iter=1000, random_state=seed)
    return Pipeline([("features", columns), ("model", model)])


def train(train: pd.DataFrame, validation: pd.DataFrame, spec: Any, seed: int) -> Any:
    """Pick C on `validation` by ROC AUC, refit on both frames, return the fitted Pipeline."""
    from sklearn.metrics import roc_auc_score

    target = spec.target.name
    features = spec.features.columns
    grid = spec.model.params.get("C_grid") or "0.01,0.1,1,10"
    candidates = [float(c) for c in str(grid).split(",")]
    best, best_auc = candidates[0], -1.0
    for C in candidates:
        model = _pipeline(spec, C, seed).fit(train[features], train[target])
        auc = roc_auc_score(validation[target], model.predict_proba(validation[features])[:, 1])
        if auc > best_auc:
            best, best_auc = C, auc
    both = pd.concat([train, validation], ignore_index=True)
    return _pipeline(spec, best, seed).fit(both[features], both[target])
