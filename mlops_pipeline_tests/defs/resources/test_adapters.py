"""The resources are configuration over the core's clients: code receives the plain client, built
from exactly the configured fields, and Dagster moves values on S3 when storage is on S3."""

from __future__ import annotations

import dagster as dg

from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.resources import AlertResource, MLflowResource, StorageResource
from mlops_pipeline.defs.resources.io_manager import io_manager
from mlops_pipeline.defs.resources.serving import ServingResource
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.monitoring.alerts import Alerts
from mlops_pipeline.monitoring.serving_process import ServingProcess

PRODUCTION = {
    "MLOPS_PROFILE": "production",
    "MLOPS_STORAGE_ROOT": "s3://mlops/pipeline",
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "MLOPS_PREDICTIONS_URL": "postgresql+psycopg2://u:p@db/predictions",
}


def test_assets_receive_the_plain_clients_built_from_the_resource_config(tmp_path):
    seen: dict[str, object] = {}

    @dg.asset
    def probe(storage: dg.ResourceParam[Storage], mlflow: dg.ResourceParam[MLflow],
              alerts: dg.ResourceParam[Alerts], serving: dg.ResourceParam[ServingProcess]) -> None:
        seen.update(storage=storage, mlflow=mlflow, alerts=alerts, serving=serving)

    result = dg.materialize([probe], resources={
        "storage": StorageResource(root=str(tmp_path), endpoint_url="http://s3:1", max_attempts=5),
        "mlflow": MLflowResource(tracking_uri="http://mlflow:5000", ui_url="http://ui", history_url="x"),
        "alerts": AlertResource(webhook_url="http://hook", timeout_seconds=2),
        "serving": ServingResource(url="http://serve:8080"),
    })
    assert result.success
    storage, mlflow = seen["storage"], seen["mlflow"]
    assert type(storage) is Storage and type(mlflow) is MLflow
    assert (storage.location, storage.endpoint_url, storage.max_attempts) == (str(tmp_path), "http://s3:1", 5)
    assert (mlflow.resolved_tracking_uri, mlflow.ui_url, mlflow.history_url) == (
        "http://mlflow:5000", "http://ui", "x")
    assert mlflow.experiment_name == "mlops_pipeline"
    alerts, serving = seen["alerts"], seen["serving"]
    assert type(alerts) is Alerts and (alerts.webhook_url, alerts.timeout_seconds) == ("http://hook", 2)
    assert type(serving) is ServingProcess
    assert (serving.url, serving.timeout_seconds) == ("http://serve:8080", 3)


def test_io_manager_follows_the_storage_root():
    from dagster_aws.s3 import S3PickleIOManager

    assert io_manager({}) is None
    assert io_manager({"MLOPS_STORAGE_ROOT": "/srv/data"}) is None
    io = io_manager(PRODUCTION)
    assert isinstance(io, S3PickleIOManager)
    assert (io.s3_bucket, io.s3_prefix) == ("mlops", "pipeline/dagster-io")
    other = io_manager({**PRODUCTION, "MLOPS_IO_MANAGER_ROOT": "s3://scratch/io"})
    assert (other.s3_bucket, other.s3_prefix) == ("scratch", "io")
