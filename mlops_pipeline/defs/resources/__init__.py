"""Dagster resources: configuration shown in the UI over the core's plain clients (files and S3,
MLflow, the dataset spec, alerts, the serving process), which the CLI and serving use directly."""

from mlops_pipeline.defs.resources.alerts import AlertResource
from mlops_pipeline.defs.resources.dataset import DatasetResource
from mlops_pipeline.defs.resources.mlflow import MLflowResource
from mlops_pipeline.defs.resources.storage import StorageResource

__all__ = ["AlertResource", "DatasetResource", "MLflowResource", "StorageResource"]
