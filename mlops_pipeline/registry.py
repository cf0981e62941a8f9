"""Registry moves: the aliases `champion`, `challenger` and `previous-champion`, and how they move.

Plain MLflow-client code with no Dagster import, so a command that only moves an alias (`rollback`)
starts in about a second; the Dagster resource (`resources.mlflow.MLflowResource`) wraps the same
class, so the assets, the CLI and the serving process all move aliases one way.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_tracking_uri() -> str:
    """The embedded default: a SQLite store under the data dir (tracking and registry)."""
    db = data_dir() / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def registry_fingerprint(tracking_uri: str, key: str) -> str:
    """Which registry a process talks to, as an HMAC keyed by the serving admin token: the CLI and
    a server can check they use the same one without either revealing its URI (which may carry
    credentials) to anyone without the token."""
    uri = tracking_uri or default_tracking_uri()
    return hmac.new(key.encode(), uri.encode(), hashlib.sha256).hexdigest()


def client_for(tracking_uri: str = "") -> MlflowClient:
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


class Registry:
    """Alias moves on one MLflow client."""

    def __init__(self, client: MlflowClient):
        self.client = client

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
                return None
            raise

    def set_alias(self, name: str, alias: str, version: str) -> AliasMove:
        before = self.version_by_alias(name, alias)
        self.client.set_registered_model_alias(name, alias, str(version))
        return AliasMove(name, alias, str(before.version) if before else None, str(version))

    def promote(self, name: str, version: str) -> list[AliasMove]:
        """Make `version` champion; the old champion becomes `previous-champion` (one-step undo)."""
        current = self.version_by_alias(name, CHAMPION)
        moves: list[AliasMove] = []
        if current is not None and str(current.version) == str(version):
            return moves
        if current is not None:
            moves.append(self.set_alias(name, PREVIOUS_CHAMPION, str(current.version)))
        moves.append(self.set_alias(name, CHAMPION, str(version)))
        challenger = self.version_by_alias(name, CHALLENGER)
        if challenger is not None and str(challenger.version) == str(version):
            self.client.delete_registered_model_alias(name, CHALLENGER)
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
