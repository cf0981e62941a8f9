"""Served traffic for the monitoring tests: rows scored by the registered champion and shaped as the
serving process captures them (one home for what the estimated-performance and labeling tests share)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from mlops_pipeline.spec import DatasetSpec, load_spec


class Answered(NamedTuple):
    spec: DatasetSpec
    version: str  # the champion's registered version
    proba: np.ndarray  # its positive-class probability per row
    features: list[dict]  # each row's features and keys, JSON-ready as the server captures them


def champion_answers(rows: pd.DataFrame) -> Answered:
    """Score `rows` with the champion of the dataset config in use (MLflow's process-wide URIs)."""
    import mlflow

    spec = load_spec()
    model = mlflow.sklearn.load_model(f"models:/{spec.name}@champion")
    version = str(mlflow.MlflowClient().get_model_version_by_alias(spec.name, "champion").version)
    proba = model.predict_proba(rows[spec.features.columns])[:, 1]
    records = rows[list(dict.fromkeys([*spec.features.columns, *spec.key_columns]))].astype(object)
    records = records.where(records.notna(), None)
    features = [{k: (str(v) if isinstance(v, pd.Timestamp) else v) for k, v in rec.items()}
                for rec in records.to_dict("records")]
    return Answered(spec, version, proba, features)
