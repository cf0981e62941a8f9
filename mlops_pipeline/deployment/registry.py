"""Registry moves: the aliases `champion`, `challenger` and `previous-champion`, and how they move.

Plain MLflow-client code with no Dagster import, so a command that only moves an alias (`rollback`)
starts in about a second; the MLflow client (`deployment.tracking.MLflow`, which the Dagster
resource hands to the assets) wraps the same class, so the assets, the CLI and the serving process
all move aliases one way.

Every move goes through `Registry.set_alias` / `Registry.remove_alias`, which append it to the
alias history (`mlops_pipeline.deployment.history`) right after MLflow accepted it, with who moved
it and why: MLflow itself keeps only where an alias points now.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from mlops_pipeline.deployment.tags import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION
from mlops_pipeline.spec import data_dir

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)


class RegistryError(RuntimeError):
    """The registry lacks what an operation needs (a rollback target, a version's snapshot tag)."""
    pass


@dataclass(frozen=True)
class AliasMove:
    """One alias move made by `Registry` (`to_version` None: the alias was removed), for the caller."""

    model: str
    alias: str
    from_version: str | None
    to_version: str | None  # None: the alias was removed
    #: Why the move is missing from the alias history (None: it was recorded).
    history_error: str | None = None

    def __str__(self) -> str:
        src = f"v{self.from_version}" if self.from_version else "(none)"
        dst = f"v{self.to_version}" if self.to_version else "(removed)"
        return f"{self.model}@{self.alias}: {src} -> {dst}"

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
    """An MLflow client on `tracking_uri` (default: the embedded SQLite store) for tracking and registry."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


class Registry:
    """Alias moves on one MLflow client, each one recorded in the alias history.

    `history_url` is the history's database (default: the prediction store's, see
    `deployment.history.history_url`). Every method that moves an alias takes `actor` (who:
    `dagster:<run id>`, `cli:<user>`, `server:<url>`, `sensor:<name>`) and `reason` (why).
    """

    def __init__(self, client: MlflowClient, history_url: str | None = None):
        self.client = client
        self.history_url = history_url

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
                return None
            raise

    def _record(self, move: AliasMove, actor: str | None, reason: str) -> AliasMove:
        """Append `move` to the alias history. The registry has already moved, so a failed write
        does not undo it: it is logged as an error with everything needed to add the row by hand,
        and returned on the move (`history_error`) for the caller to report."""
        from mlops_pipeline.deployment.history import default_actor, open_history

        who = actor or default_actor()
        try:
            open_history(self.history_url).append(move.model, move.alias, move.from_version,
                                                  move.to_version, who, reason)
        except Exception as exc:  # noqa: BLE001 - the move happened; losing its record must be loud
            error = f"{type(exc).__name__}: {exc}"
            log.error("ALIAS HISTORY NOT RECORDED for %s (actor %s, reason %r): %s", move, who,
                      reason, error)
            return replace(move, history_error=error)
        return move

    def set_alias(self, name: str, alias: str, version: str, actor: str | None = None,
                  reason: str = "") -> AliasMove:
        """Point `alias` at `version` and record the move (even when it already pointed there:
        whoever set it again said so)."""
        before = self.version_by_alias(name, alias)
        self.client.set_registered_model_alias(name, alias, str(version))
        move = AliasMove(name, alias, str(before.version) if before else None, str(version))
        return self._record(move, actor, reason)

    def record_decision(self, name: str, alias: str, version: str, actor: str | None = None,
                        reason: str = "") -> AliasMove:
        """Record a decision about the version `alias` names that moves nothing (the release
        guard's "ready to promote"): a history row from and to the same version, so "who decided
        what, and when" has one place to look, without a move that did not happen."""
        return self._record(AliasMove(name, alias, str(version), str(version)), actor, reason)

    def remove_alias(self, name: str, alias: str, actor: str | None = None,
                     reason: str = "") -> AliasMove | None:
        """Delete `alias` and record it (None, and nothing recorded, when it did not exist)."""
        before = self.version_by_alias(name, alias)
        if before is None:
            return None
        self.client.delete_registered_model_alias(name, alias)
        return self._record(AliasMove(name, alias, str(before.version), None), actor, reason)

    def forgotten_champion(self, name: str):
        """The alias history's last champion move of `name` when this registry looks new to it
        (no champion, at most one version): the history remembers a registry this one is not.
        A mistyped MLFLOW_TRACKING_URI (a SQLite path, a host) would otherwise start an empty
        registry and quietly promote its v1 as the first champion. None when nothing is amiss."""
        from mlops_pipeline.deployment.filters import equals
        from mlops_pipeline.deployment.history import open_history

        if self.version_by_alias(name, CHAMPION) is not None:
            return None
        if len(self.client.search_model_versions(equals("name", name), max_results=2)) > 1:
            return None
        moves = open_history(self.history_url).events(model=name, alias=CHAMPION, limit=1)
        return moves[0] if moves and moves[0].to_version else None

    def check_not_forgotten(self, name: str) -> None:
        """Raise `RegistryError` (naming the registry, the history and the fix) when
        `forgotten_champion` finds the alias history remembers another registry's champion."""
        from mlops_pipeline.deployment.history import history_url
        from mlops_pipeline.redaction import redact

        event = self.forgotten_champion(name)
        if event is not None:
            raise RegistryError(
                f"the registry {redact(str(self.client.tracking_uri))} holds no champion of {name}, but "
                f"the alias history ({redact(history_url(self.history_url))}) says v{event.to_version} "
                f"was champion ({event.at:%Y-%m-%d %H:%M} UTC, {event.actor}): is MLFLOW_TRACKING_URI "
                "mistyped? To start a new registry on purpose, pass --new-registry")

    def promote(self, name: str, version: str, actor: str | None = None,
                reason: str = "", new_registry: bool = False) -> list[AliasMove]:
        """Make `version` champion; the old champion becomes `previous-champion` (one-step undo).

        Returns the champion and previous-champion moves; a `challenger` alias on `version` is
        removed too (recorded in the history, not returned). A first champion in a registry the
        alias history does not know is refused (`check_not_forgotten`) unless `new_registry`."""
        current = self.version_by_alias(name, CHAMPION)
        moves: list[AliasMove] = []
        if current is not None and str(current.version) == str(version):
            return moves
        if current is None and not new_registry:
            self.check_not_forgotten(name)
        if current is not None:
            moves.append(self.set_alias(name, PREVIOUS_CHAMPION, str(current.version), actor,
                                        f"v{current.version} replaced as champion by v{version}"))
        moves.append(self.set_alias(name, CHAMPION, str(version), actor, reason))
        challenger = self.version_by_alias(name, CHALLENGER)
        if challenger is not None and str(challenger.version) == str(version):
            self.remove_alias(name, CHALLENGER, actor, f"v{version} promoted to champion")
        return moves

    def rollback(self, name: str, actor: str | None = None, reason: str = "") -> list[AliasMove]:
        """Swap champion and previous-champion: the last promotion undone in one step."""
        previous = self.version_by_alias(name, PREVIOUS_CHAMPION)
        if previous is None:
            raise RegistryError(f"{name} has no '{PREVIOUS_CHAMPION}' alias: nothing to roll back to")
        current = self.version_by_alias(name, CHAMPION)
        why = f"rollback: {reason}" if reason else "rollback"
        moves = [self.set_alias(name, CHAMPION, str(previous.version), actor, why)]
        if current is not None:
            moves.append(self.set_alias(name, PREVIOUS_CHAMPION, str(current.version), actor, why))
        return moves
