"""Resources are the only doors to the outside world: files, MLflow, and (later) S3 and databases."""

from mlops_pipeline.defs.resources.alerts import AlertResource
from mlops_pipeline.defs.resources.dataset import DatasetResource
from mlops_pipeline.defs.resources.mlflow import MLflowResource
from mlops_pipeline.defs.resources.storage import StorageResource

__all__ = ["AlertResource", "DatasetResource", "MLflowResource", "StorageResource"]
