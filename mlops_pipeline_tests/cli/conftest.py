"""A registry with one trained, gated champion, shared by the gate and reproduce tests.

Training it once per session (~15 s) instead of per test keeps these end-to-end tests inside the
suite's time budget. Tests that alter its files (a snapshot, a manifest) put them back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops_pipeline.landing import land_months
from mlops_pipeline.settings import PROJECT_ROOT
from mlops_pipeline_tests.conftest import SAMPLE

LOOP_ENV = ["MLOPS_DATA_DIR", "DAGSTER_HOME", "MLFLOW_TRACKING_URI", "MLOPS_MLFLOW_UI_URL",
            "MLOPS_DATASET_CONFIG"]


@dataclass(frozen=True)
class Registry:
    root: Path
    config: Path
    snapshot_id: str
    run_id: str

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}"

    def use(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point the CLI at this registry and data dir, the way a user's shell would."""
        monkeypatch.setenv("MLOPS_DATA_DIR", str(self.root))
        monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(self.config))
        monkeypatch.setenv("DAGSTER_HOME", str(self.root / "dagster_home"))
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.delenv("MLOPS_MLFLOW_UI_URL", raising=False)


@pytest.fixture(scope="session")
def seeded_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The flights spec with feature subsampling (`max_features`), so the seed changes the model.

    With the committed spec (early stopping off, fewer than 200k rows) HistGradientBoosting draws no
    random numbers at all: a different seed trains the very same model (see docs/ci.md).
    """
    spec = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    spec["model"]["params"]["max_features"] = 0.5
    path = tmp_path_factory.mktemp("configs") / "flights_seeded.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def registry(
    tmp_path_factory: pytest.TempPathFactory, seeded_config: Path, flights: pd.DataFrame
) -> Iterator[Registry]:
    from mlops_pipeline.cli.common import run_loop

    root = tmp_path_factory.mktemp("registry") / "data"
    with pytest.MonkeyPatch.context() as mp:
        reg = Registry(root, seeded_config, "", "")
        reg.use(mp)
        land_months(root / "landing" / "flights", (1, 2, 3), SAMPLE, frame=flights)
        result = run_loop()
        assert result.success, [e.description for e in result.get_asset_check_evaluations()]
        trained = result.output_for_node("trained_model")
    yield Registry(root, seeded_config, trained.snapshot_id, trained.run_id)
