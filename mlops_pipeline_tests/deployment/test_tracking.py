"""Registry moves: promotion keeps the previous champion findable; rollback is one step."""

from __future__ import annotations

import pytest

from mlops_pipeline.deployment.registry import RegistryError
from mlops_pipeline.deployment.tags import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION
from mlops_pipeline.deployment.tracking import MLflow

NAME = "toy"


@pytest.fixture
def registry(data_dir) -> MLflow:
    res = MLflow()
    client = res.client()
    client.create_registered_model(NAME)
    for _ in range(3):  # alias logic does not care what the versions hold
        client.create_model_version(NAME, source=str(data_dir))
    return res


def _alias(res: MLflow, alias: str) -> str | None:
    mv = res.version_by_alias(NAME, alias)
    return None if mv is None else str(mv.version)


def test_embedded_default_is_sqlite_under_the_data_dir(data_dir):
    res = MLflow()
    assert res.resolved_tracking_uri == f"sqlite:///{data_dir}/mlflow/mlflow.db"
    assert res.resolved_artifact_location == str(data_dir / "mlflow" / "artifacts")
    assert MLflow(tracking_uri="http://127.0.0.1:5999").resolved_artifact_location is None


def test_promote_moves_champion_and_remembers_the_previous_one(registry):
    moves = registry.promote(NAME, "1")
    assert [str(m) for m in moves] == ["toy@champion: (none) -> v1"]
    registry.set_alias(NAME, CHALLENGER, "2")
    moves = registry.promote(NAME, "2")
    assert [str(m) for m in moves] == ["toy@previous-champion: (none) -> v1", "toy@champion: v1 -> v2"]
    assert (_alias(registry, CHAMPION), _alias(registry, PREVIOUS_CHAMPION)) == ("2", "1")
    assert _alias(registry, CHALLENGER) is None  # the challenger became champion
    assert registry.promote(NAME, "2") == []  # promoting the champion again moves nothing


def test_rollback_swaps_champion_and_previous_champion(registry):
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback(NAME)
    registry.promote(NAME, "1")
    registry.promote(NAME, "3")
    moves = registry.rollback(NAME)
    assert [str(m) for m in moves] == ["toy@champion: v3 -> v1", "toy@previous-champion: v1 -> v3"]
    registry.rollback(NAME)  # rolling back a rollback restores the promotion
    assert (_alias(registry, CHAMPION), _alias(registry, PREVIOUS_CHAMPION)) == ("3", "1")
