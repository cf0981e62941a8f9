"""Scoring a registered model version on a holdout, exactly as serving would load it.

The gate compares a candidate with the champion on the same rows; both must be scored the same
way, from the registry as serving loads them (any flavor: `serving.flavors`), or the comparison
measures the loading path instead of the models. The pipeline's `model_version` step, `mlops-pipeline promote`
and the CI gate all score through `score_version`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from mlops_pipeline.deployment.tracking import MLflow
    from mlops_pipeline.spec import DatasetSpec


def load_version(mlflow: MLflow, name: str, version: str) -> Any:
    """The registered `name` v`version` as serving loads it, whatever its flavor
    (`serving.flavors.load_local`: the sklearn flavor natively, any other through `mlflow.pyfunc`,
    with class probabilities when the model underneath offers them).

    `configure()` first points the `mlflow` library at the client's tracking and registry URIs."""
    import mlflow as mlflow_lib

    from mlops_pipeline.serving.flavors import load_local

    mlflow.configure()
    local = mlflow_lib.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}")
    return load_local(local)[0]


def score_model(model: Any, df: pd.DataFrame, spec: DatasetSpec) -> dict[str, float]:
    """The gate's metrics of a loaded model on `df`'s holdout split, its inputs coerced by the
    data contract first (as the server coerces a request)."""
    return score_model_rows(model, df, spec)[0]


def score_model_rows(model: Any, df: pd.DataFrame, spec: DatasetSpec) -> tuple[dict[str, float], Any]:
    """`score_model`'s metrics and the answers they came from, per holdout row in `df`'s order
    (`segment_metrics.Scored`): what the per-segment gate judges without a second model call."""
    from mlops_pipeline.data.contract import load_contract, validate
    from mlops_pipeline.data.preparation import xy
    from mlops_pipeline.deployment.segment_metrics import scored
    from mlops_pipeline.training.model import class_info, compute_metrics, predict_scores

    X, y = xy(df, spec, "holdout")
    X = validate(X, load_contract(spec).for_columns(spec.features.columns))
    if spec.task == "classification" and getattr(model, "has_proba", True) is False:
        raise ValueError(f"the {getattr(model, 'flavor', '')} model offers no class probabilities "
                         "(no predict_proba and classes_): the gate's classification metrics need them")
    classes = class_info(model) if spec.task == "classification" else None
    scores = predict_scores(model, X, spec.task)
    return compute_metrics(spec.task, y, scores, classes), scored(spec.task, y, scores, classes)


def score_version(mlflow: MLflow, name: str, version: str, df: pd.DataFrame,
                  spec: DatasetSpec) -> dict[str, float]:
    """Score registered `name` v`version` on `df`'s holdout exactly as serving would load it."""
    return score_model(load_version(mlflow, name, version), df, spec)


def score_version_rows(mlflow: MLflow, name: str, version: str, df: pd.DataFrame,
                       spec: DatasetSpec) -> tuple[dict[str, float], Any]:
    """`score_version` with the answers per row (`score_model_rows`)."""
    return score_model_rows(load_version(mlflow, name, version), df, spec)
