"""Training on a bounded sample, end to end: with `model.max_train_rows` below the train split, the
loop fits on exactly that many rows (stratified by class, seeded), records the sample in the run
manifest, the prepared table is stored beside the snapshot, and `reproduce` rebuilds the registered
version bit-identically from the manifest. On statsmodels' `fair` (no time column, no key)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline_tests.conftest import materialized

pytestmark = pytest.mark.slow

MAX_ROWS = 1500


@pytest.fixture
def bounded_fair(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import statsmodels.api as sm

    landing = data_dir / "landing" / "fair"
    landing.mkdir(parents=True)
    sm.datasets.fair.load_pandas().data.to_csv(landing / "fair.csv", index=False)
    config = yaml.safe_load((PROJECT_ROOT / "data/configs/fair.yaml").read_text())
    config["model"]["max_train_rows"] = MAX_ROWS
    path = tmp_path / "fair_bounded.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(path))
    return path


def test_the_loop_trains_on_a_recorded_bounded_sample_that_reproduces(bounded_fair, run_loop,
                                                                       data_dir, capsys):
    import mlflow

    from mlops_pipeline.cli import main
    from mlops_pipeline.data.features import FeaturesInfo
    from mlops_pipeline.deployment.tracking import MLflow

    result = run_loop()
    assert {"trained_model", "model_version", "champion_model"} <= materialized(result)
    info = result.output_for_node("training_features")
    assert isinstance(info, FeaturesInfo) and Path(info.location).is_file()
    assert Path(info.location).parent == data_dir / "features"
    stored = pd.read_parquet(info.location)
    assert len(stored) == info.rows and (stored["_split"] == "train").sum() == info.train_rows
    assert info.train_rows > MAX_ROWS  # the sample is a real bound here

    trained = result.output_for_node("trained_model")
    sample = trained.manifest["training_sample"]
    assert sample == {"rows": MAX_ROWS, "of": info.train_rows, "max_rows": MAX_ROWS, "seed": 42,
                      "stratified_by": "had_affair"}
    registry = MLflow()
    registry.configure()
    params = mlflow.get_run(trained.run_id).data.params
    assert params["train_rows"] == str(MAX_ROWS) and params["train_rows_available"] == str(info.train_rows)
    # The holdout is scored in full, never sampled.
    assert trained.manifest["holdout"]["rows"] == info.holdout_rows

    capsys.readouterr()
    assert main(["reproduce", "champion"]) == 0
    out = capsys.readouterr().out
    assert "REPRODUCED fair_affairs v1" in out and "bit-identical" in out
