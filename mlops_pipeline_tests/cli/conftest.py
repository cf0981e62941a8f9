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

from mlops_pipeline.data.landing import land_months
from mlops_pipeline.spec import PROJECT_ROOT
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


# ---- a dataset nobody tuned for: statsmodels' bundled `fair` -------------------------------------
FAIR_CONFIG = {
    "name": "fair_affairs",
    "task": "classification",
    "source": {"path": "landing/fair/*.csv", "format": "csv"},
    "target": {"name": "affair", "expression": "affairs > 0", "drop_missing": ["affairs"]},
    "features": {"numerical": ["rate_marriage", "age", "yrs_married", "children", "religious", "educ",
                               "occupation", "occupation_husb"]},
    "gate": {"roc_auc": {"floor": 0.6, "tolerance": 0.02}},
    # The table's coarse survey answers repeat: whole-row duplicates are real here, not a bug.
    "checks": {"max_duplicate_share": 0.25},
}


@dataclass(frozen=True)
class FairDataset:
    root: Path  # the user's data dir (MLOPS_DATA_DIR)
    config: Path

    def env(self, **extra: str) -> dict[str, str]:
        import os

        env = {**os.environ, "MLOPS_DATA_DIR": str(self.root), **extra}
        for key in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "MLOPS_MLFLOW_UI_URL", "MLOPS_DATASET_CONFIG"):
            if key not in extra:
                env.pop(key, None)
        return env

    def land(self) -> list[Path]:
        """Two CSV batches of the shuffled table (it is stored sorted by the outcome)."""
        import statsmodels.api as sm

        df = sm.datasets.fair.load_pandas().data.sample(frac=1.0, random_state=0).reset_index(drop=True)
        landing = self.root / "landing" / "fair"
        landing.mkdir(parents=True, exist_ok=True)
        paths = [landing / "fair_1.csv", landing / "fair_2.csv"]
        df.iloc[:4000].to_csv(paths[0], index=False)
        df.iloc[4000:].to_csv(paths[1], index=False)
        return paths


@pytest.fixture
def fair(tmp_path: Path) -> FairDataset:
    """The `fair` table as a new user's dataset: a config (no time column), landed CSV batches and a
    contract drafted by `mlops-pipeline contract infer` run as the README says."""
    import os
    import subprocess
    import sys

    root = tmp_path / "data"
    config = tmp_path / "configs" / "fair.yaml"
    config.parent.mkdir(parents=True)
    contract = tmp_path / "configs" / "fair_contract.yaml"
    config.write_text(yaml.safe_dump({**FAIR_CONFIG, "contract": str(contract)}, sort_keys=False))
    ds = FairDataset(root, config)
    ds.land()
    cli = str(Path(sys.executable).parent / "mlops-pipeline")
    drafted = subprocess.run([cli, "contract", "infer", "--config", str(config)], env=ds.env(),
                             capture_output=True, text=True, timeout=120, cwd=os.getcwd())
    assert drafted.returncode == 0, drafted.stderr
    return ds
