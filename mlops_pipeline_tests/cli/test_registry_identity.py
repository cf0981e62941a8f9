"""A mistyped registry is not a new registry.

`MLFLOW_TRACKING_URI` pointing at a SQLite file in a directory that does not exist is refused (it
is a typo, not a place to start a registry); and a registry that holds no champion while this data
dir's alias history remembers one is refused before anything trains, unless `--new-registry` says
it is meant: then the loop trains and promotes its first champion there.
"""

from __future__ import annotations

import pytest

from mlops_pipeline.cli import main
from mlops_pipeline.deployment.tags import CHAMPION
from mlops_pipeline.deployment.tracking import MLflow


def test_a_sqlite_registry_in_a_directory_that_does_not_exist_is_refused(data_dir, land, monkeypatch,
                                                                          capsys):
    land(months=(1,), sample=0.02)
    missing = data_dir.parent / "nonexistent" / "dir" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}")
    assert main(["materialize"]) == 2
    err = capsys.readouterr().err
    assert f"the SQLite registry's directory {missing.parent} does not exist" in err
    assert err.count("\n") == 1 and not missing.parent.exists()


@pytest.mark.slow
def test_an_empty_registry_the_history_does_not_know_gets_no_champion_unless_meant(
        data_dir, land, monkeypatch, capsys):
    land(months=(1,))
    assert main(["materialize"]) == 0  # v1 champion in the data dir's registry, on record
    other = data_dir.parent / "other"
    other.mkdir()
    uri = f"sqlite:///{other / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    capsys.readouterr()

    assert main(["materialize"]) == 2
    err = capsys.readouterr().err
    assert "holds no champion of flights_delay" in err and "v1 was champion" in err
    assert "--new-registry" in err and err.count("\n") == 1
    registry = MLflow(tracking_uri=uri)
    assert registry.version_by_alias("flights_delay", CHAMPION) is None
    assert not registry.client().search_model_versions("name = 'flights_delay'")  # nothing trained

    assert main(["materialize", "--new-registry"]) == 0
    assert registry.version_by_alias("flights_delay", CHAMPION).version == 1
