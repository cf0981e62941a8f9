"""A trained loop to start from: Jan-Mar landed (the `land` fixture's sample), the whole `mlops_loop`
run once per session on a Dagster instance under its own DAGSTER_HOME, v1 champion.

Many tests need exactly that before they do what they test (serve a day of traffic, run the
production assets, tick a sensor, retrain). Each gets its own copy (`clone_tree`: data dir and
Dagster home, paths rewritten), so what one test writes (predictions, labels, aliases, runs) no
other test sees, and the loop is trained once instead of once per test.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlops_pipeline.data.landing import land_months
from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline_tests.clone import clone_tree
from mlops_pipeline_tests.conftest import SAMPLE

REGRESSION_CONFIG = "data/configs/flights_regression.yaml"
_copies = itertools.count()


@dataclass(frozen=True)
class TrainedLoop:
    """Where a trained loop lives: `root/data` (MLOPS_DATA_DIR), `root/dagster_home` (DAGSTER_HOME,
    the project's dagster.yaml), and the dataset config it was trained with (None: flights)."""

    root: Path
    config: str | None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    def use(self, mp: pytest.MonkeyPatch) -> None:
        mp.setenv("MLOPS_DATA_DIR", str(self.data_dir))
        mp.setenv("DAGSTER_HOME", str(self.dagster_home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        if self.config is None:
            mp.delenv("MLOPS_DATASET_CONFIG", raising=False)
        else:
            mp.setenv("MLOPS_DATASET_CONFIG", self.config)


def _train(root: Path, config: str | None, flights: pd.DataFrame) -> TrainedLoop:
    from mlops_pipeline.defs.definitions import build_definitions

    trained = TrainedLoop(root, config)
    trained.dagster_home.mkdir(parents=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", trained.dagster_home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as mp:
        trained.use(mp)
        land_months(trained.data_dir / "landing" / "flights", (1, 2, 3), SAMPLE, frame=flights)
        with dg.DagsterInstance.get() as instance:
            result = build_definitions().resolve_job_def("mlops_loop").execute_in_process(
                instance=instance, raise_on_error=False)
    assert result.success, "the shared loop run failed"
    return trained


@pytest.fixture(scope="session")
def _trained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trained")


@pytest.fixture(scope="session")
def _trained_flights(_trained_dir: Path, flights: pd.DataFrame) -> TrainedLoop:
    return _train(_trained_dir / "flights", None, flights)


@pytest.fixture(scope="session")
def _trained_regression(_trained_dir: Path, flights: pd.DataFrame) -> TrainedLoop:
    return _train(_trained_dir / "regress", REGRESSION_CONFIG, flights)


def _copy(trained: TrainedLoop, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of `trained` (same path length as the original: see `clone_tree`), made the
    process's data dir, Dagster home and dataset; returns its data dir."""
    from mlops_pipeline.deployment.tracking import MLflow

    copy = TrainedLoop(clone_tree(trained.root, trained.root.with_name(f"c{next(_copies):06d}")),
                       trained.config)
    copy.use(monkeypatch)
    # The `mlflow` module's globals, where a loop run in this test would have left them: at the
    # copy's registry, never at the original's or another test's.
    MLflow().configure()
    return copy.data_dir


@pytest.fixture
def trained_flights(_trained_flights: TrainedLoop, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data dir of this test's own copy of the session's trained flights loop (classification):
    as if the test had landed Jan-Mar and run the loop on `DagsterInstance.get()` itself."""
    return _copy(_trained_flights, monkeypatch)


@pytest.fixture
def trained_regression(_trained_regression: TrainedLoop, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The same for flights_regression.yaml (MLOPS_DATASET_CONFIG set to it)."""
    return _copy(_trained_regression, monkeypatch)

