"""MLflow 3 as a Dagster resource: tracking, the model registry, and the champion alias.

Written for MLflow 3 instead of using the legacy `dagster-mlflow` resource, which is a
config-schema resource whose hook ends MLflow runs early. Registry moves (promote, rollback) live
here so the assets, the CLI and the serving process all move aliases the same way.

The embedded default is a SQLite backend store plus a local artifact root under the data dir: no
server to start. Set `MLFLOW_TRACKING_URI` (e.g. `http://127.0.0.1:5000`) and the same code talks to
a tracking server.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from mlops_pipeline.settings import data_dir

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"


class RegistryError(RuntimeError):
    pass


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    from_version: str | None
    to_version: str

    def __str__(self) -> str:
        src = f"v{self.from_version}" if self.from_version else "(none)"
        return f"{self.model}@{self.alias}: {src} -> v{self.to_version}"


class MLflowResource(dg.ConfigurableResource):
    """Where runs and models go. Empty fields mean the embedded default under the data dir."""

    tracking_uri: str = ""
    registry_uri: str = ""
    experiment_name: str = "mlops_pipeline"
    artifact_location: str = ""
    ui_url: str = ""

    _client: Any = PrivateAttr(default=None)

    @property
    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        db = data_dir() / "mlflow" / "mlflow.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db}"

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

    # ---- registry ----------------------------------------------------------------------------
    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
                return None
            raise

    def set_alias(self, name: str, alias: str, version: str) -> AliasMove:
        before = self.version_by_alias(name, alias)
        self.client().set_registered_model_alias(name, alias, str(version))
        return AliasMove(name, alias, str(before.version) if before else None, str(version))

    def promote(self, name: str, version: str) -> list[AliasMove]:
        """Make `version` champion; the old champion becomes `previous-champion` (one-step undo)."""
        current = self.version_by_alias(name, CHAMPION)
        moves = []
        if current is not None and str(current.version) == str(version):
            return moves
        if current is not None:
            moves.append(self.set_alias(name, PREVIOUS_CHAMPION, str(current.version)))
        moves.append(self.set_alias(name, CHAMPION, str(version)))
        challenger = self.version_by_alias(name, CHALLENGER)
        if challenger is not None and str(challenger.version) == str(version):
            self.client().delete_registered_model_alias(name, CHALLENGER)
        return moves

    def rollback(self, name: str) -> list[AliasMove]:
        """Swap champion and previous-champion: the last promotion undone in one step."""
        previous = self.version_by_alias(name, PREVIOUS_CHAMPION)
        if previous is None:
            raise RegistryError(f"{name} has no '{PREVIOUS_CHAMPION}' alias: nothing to roll back to")
        current = self.version_by_alias(name, CHAMPION)
        moves = [self.set_alias(name, CHAMPION, str(previous.version))]
        if current is not None:
            moves.append(self.set_alias(name, PREVIOUS_CHAMPION, str(current.version)))
        return moves
