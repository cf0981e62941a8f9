"""MLflow 3 as a Dagster resource: tracking, the model registry, and the champion alias.

Written for MLflow 3 instead of using the legacy `dagster-mlflow` resource, which is a
config-schema resource whose hook ends MLflow runs early. Registry moves (promote, rollback) are in
`mlops_pipeline.deployment.registry`, which this resource wraps, so the assets, the CLI and the serving
process all move aliases the same way.

The embedded default is a SQLite backend store plus a local artifact root under the data dir: no
server to start. Set `MLFLOW_TRACKING_URI` (e.g. `http://127.0.0.1:5000`) and the same code talks to
a tracking server.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from mlops_pipeline.deployment.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    AliasMove,
    Registry,
    RegistryError,
    default_tracking_uri,
)
from mlops_pipeline.spec import data_dir

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

__all__ = [
    "CHALLENGER", "CHAMPION", "PREVIOUS_CHAMPION", "AliasMove", "MLflowResource", "Registry", "RegistryError",
]


class MLflowResource(dg.ConfigurableResource):
    """Where runs and models go. Empty fields mean the embedded default under the data dir."""

    tracking_uri: str = ""
    registry_uri: str = ""
    experiment_name: str = "mlops_pipeline"
    artifact_location: str = ""
    ui_url: str = ""
    #: Database of the alias history (empty: the prediction store's, `MLOPS_PREDICTIONS_URL`).
    history_url: str = ""

    _client: Any = PrivateAttr(default=None)

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or default_tracking_uri()

    @property
    def resolved_artifact_location(self) -> str | None:
        if self.artifact_location:
            return self.artifact_location
        if self.resolved_tracking_uri.startswith("sqlite:"):
            return str(data_dir() / "mlflow" / "artifacts")
        return None  # a tracking server decides (e.g. --artifacts-destination)

    def configure(self) -> None:
        import mlflow

        mlflow.set_tracking_uri(self.resolved_tracking_uri)
        mlflow.set_registry_uri(self.registry_uri or self.resolved_tracking_uri)

    def client(self) -> MlflowClient:
        if self._client is None:
            import mlflow

            self.configure()
            self._client = mlflow.MlflowClient(
                tracking_uri=self.resolved_tracking_uri,
                registry_uri=self.registry_uri or self.resolved_tracking_uri,
            )
        return self._client

    def experiment_id(self) -> str:
        client = self.client()
        exp = client.get_experiment_by_name(self.experiment_name)
        if exp is not None:
            return exp.experiment_id
        location = self.resolved_artifact_location
        if location and "://" not in location:
            Path(location).mkdir(parents=True, exist_ok=True)
        return client.create_experiment(self.experiment_name, artifact_location=location)

    @contextmanager
    def start_run(self, run_name: str, tags: dict[str, str] | None = None):
        import mlflow

        self.configure()
        with mlflow.start_run(
            experiment_id=self.experiment_id(), run_name=run_name, tags=tags or {}
        ) as run:
            yield run

    # ---- links -------------------------------------------------------------------------------
    def run_url(self, run_id: str, experiment_id: str | None = None) -> str | None:
        if not self.ui_url:
            return None
        exp = experiment_id or self.experiment_id()
        return f"{self.ui_url.rstrip('/')}/#/experiments/{exp}/runs/{run_id}"

    def model_version_url(self, name: str, version: str) -> str | None:
        if not self.ui_url:
            return None
        return f"{self.ui_url.rstrip('/')}/#/models/{name}/versions/{version}"

    # ---- registry (the moves themselves live in mlops_pipeline.deployment.registry) ----------------------
    # Every move takes `actor` (who) and `reason` (why), recorded in the alias history.
    def registry(self) -> Registry:
        return Registry(self.client(), history_url=self.history_url or None)

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        return self.registry().version_by_alias(name, alias)

    def set_alias(self, name: str, alias: str, version: str, actor: str | None = None,
                  reason: str = "") -> AliasMove:
        return self.registry().set_alias(name, alias, version, actor, reason)

    def remove_alias(self, name: str, alias: str, actor: str | None = None,
                     reason: str = "") -> AliasMove | None:
        return self.registry().remove_alias(name, alias, actor, reason)

    def promote(self, name: str, version: str, actor: str | None = None,
                reason: str = "") -> list[AliasMove]:
        """Make `version` champion; the old champion becomes `previous-champion` (one-step undo)."""
        return self.registry().promote(name, version, actor, reason)

    def rollback(self, name: str, actor: str | None = None, reason: str = "") -> list[AliasMove]:
        """Swap champion and previous-champion: the last promotion undone in one step."""
        return self.registry().rollback(name, actor, reason)
