"""Where runs and models go: the MLflow tracking server (or embedded store) as a plain client.

`MLflow` is what the assets (through `defs.resources.mlflow`), the CLI, serving, `reproduce` and
bench/ use to log runs, link to the MLflow UI and move aliases; the moves themselves live in
`deployment.registry.Registry`, so every caller moves an alias one way. Written for MLflow 3 rather
than the legacy `dagster-mlflow` resource, whose hook ends MLflow runs early.

Empty fields mean the embedded default: a SQLite store and a local artifact root under the data dir,
no server to start. With `tracking_uri` (e.g. `http://127.0.0.1:5000`) the same code talks to a
tracking server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_pipeline.deployment.registry import AliasMove, Registry, default_tracking_uri
from mlops_pipeline.spec import data_dir

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


class MLflow:
    """One MLflow tracking and registry location; the MLflow client is built on first use.

    `history_url` is the database of the alias history (empty: the prediction store's,
    `MLOPS_PREDICTIONS_URL`); `ui_url` turns runs and versions into links (empty: no links).
    """

    def __init__(self, tracking_uri: str = "", registry_uri: str = "",
                 experiment_name: str = "mlops_pipeline", artifact_location: str = "", ui_url: str = "",
                 history_url: str = ""):
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.experiment_name = experiment_name
        self.artifact_location = artifact_location
        self.ui_url = ui_url
        self.history_url = history_url
        self._client: Any = None

    @property
    def resolved_tracking_uri(self) -> str:
        """`tracking_uri`, or the embedded SQLite store under the data dir."""
        return self.tracking_uri or default_tracking_uri()

    @property
    def resolved_artifact_location(self) -> str | None:
        """Where new experiments keep artifacts: configured, local for SQLite, else the server's."""
        if self.artifact_location:
            return self.artifact_location
        if self.resolved_tracking_uri.startswith("sqlite:"):
            return str(data_dir() / "mlflow" / "artifacts")
        return None  # a tracking server decides (e.g. --artifacts-destination)

    def configure(self) -> None:
        """Point the `mlflow` module's globals (fluent API: `start_run`, `log_*`) here."""
        import mlflow

        mlflow.set_tracking_uri(self.resolved_tracking_uri)
        mlflow.set_registry_uri(self.registry_uri or self.resolved_tracking_uri)

    def client(self) -> MlflowClient:
        """The MLflow client for this location, built once (importing mlflow only then)."""
        if self._client is None:
            import mlflow

            self.configure()
            self._client = mlflow.MlflowClient(
                tracking_uri=self.resolved_tracking_uri,
                registry_uri=self.registry_uri or self.resolved_tracking_uri,
            )
        return self._client

    def experiment_id(self) -> str:
        """The experiment's id, created (with its artifact location) on first use."""
        client = self.client()
        exp = client.get_experiment_by_name(self.experiment_name)
        if exp is not None:
            return exp.experiment_id
        location = self.resolved_artifact_location
        if location and "://" not in location:
            Path(location).mkdir(parents=True, exist_ok=True)
        return client.create_experiment(self.experiment_name, artifact_location=location)

    @contextmanager
    def start_run(self, run_name: str, tags: dict[str, str] | None = None) -> Iterator[Any]:
        """An active MLflow run in this experiment (ended when the block exits)."""
        import mlflow

        self.configure()
        with mlflow.start_run(
            experiment_id=self.experiment_id(), run_name=run_name, tags=tags or {}
        ) as run:
            yield run

    # ---- links -------------------------------------------------------------------------------
    def run_url(self, run_id: str, experiment_id: str | None = None) -> str | None:
        """A link to the run in the MLflow UI (None without `ui_url`)."""
        if not self.ui_url:
            return None
        exp = experiment_id or self.experiment_id()
        return f"{self.ui_url.rstrip('/')}/#/experiments/{exp}/runs/{run_id}"

    def model_version_url(self, name: str, version: str) -> str | None:
        """A link to the model version in the MLflow UI (None without `ui_url`)."""
        if not self.ui_url:
            return None
        return f"{self.ui_url.rstrip('/')}/#/models/{name}/versions/{version}"

    # ---- registry: every move takes `actor` (who) and `reason` (why), kept in the alias history ---
    def registry(self) -> Registry:
        """The alias moves on this client, recorded in the alias history at `history_url`."""
        return Registry(self.client(), history_url=self.history_url or None)

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version `alias` points at, or None when the alias (or the model) does not exist."""
        return self.registry().version_by_alias(name, alias)

    def set_alias(self, name: str, alias: str, version: str, actor: str | None = None,
                  reason: str = "") -> AliasMove:
        """Point `alias` at `version` and record the move."""
        return self.registry().set_alias(name, alias, version, actor, reason)

    def remove_alias(self, name: str, alias: str, actor: str | None = None,
                     reason: str = "") -> AliasMove | None:
        """Delete `alias` and record it (None when it did not exist)."""
        return self.registry().remove_alias(name, alias, actor, reason)

    def promote(self, name: str, version: str, actor: str | None = None,
                reason: str = "", new_registry: bool = False) -> list[AliasMove]:
        """Make `version` champion; the old champion becomes `previous-champion` (one-step undo).
        A first champion in a registry the alias history does not know needs `new_registry`."""
        return self.registry().promote(name, version, actor, reason, new_registry)

    def rollback(self, name: str, actor: str | None = None, reason: str = "") -> list[AliasMove]:
        """Swap champion and previous-champion: the last promotion undone in one step."""
        return self.registry().rollback(name, actor, reason)
