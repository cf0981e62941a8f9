"""The `mlflow` resource: configuration shown in the Dagster UI, a plain `MLflow` handed to code."""

from __future__ import annotations

import dagster as dg

from mlops_pipeline.deployment.tracking import MLflow


class MLflowResource(dg.ConfigurableResource):
    """Where runs and models go (`mlops_pipeline.deployment.tracking`); assets and sensors receive
    the `MLflow` client, annotated `dg.ResourceParam[MLflow]`. Empty fields: the embedded default."""

    tracking_uri: str = ""
    registry_uri: str = ""
    experiment_name: str = "mlops_pipeline"
    artifact_location: str = ""
    ui_url: str = ""
    #: Database of the alias history (empty: the prediction store's, `MLOPS_PREDICTIONS_URL`).
    history_url: str = ""

    def create_resource(self, context: dg.InitResourceContext) -> MLflow:  # type: ignore[override]
        return MLflow(self.tracking_uri, self.registry_uri, self.experiment_name,
                      self.artifact_location, self.ui_url, self.history_url)
