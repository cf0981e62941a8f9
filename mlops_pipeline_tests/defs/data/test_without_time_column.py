"""A dataset without a time column, end to end: your own CSVs landed, a stratified split, the loop
through Dagster, and the registered version reproduced bit for bit."""

from __future__ import annotations

import pytest
import yaml

from mlops_pipeline.spec import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_own_csvs_without_a_time_column_train_register_and_reproduce(
    data_dir, tmp_path, flights, monkeypatch, capsys
):
    from mlops_pipeline.cli import main

    rows = flights[flights["month"] <= 2].sample(frac=0.08, random_state=0).drop(columns="time_hour")
    drop = tmp_path / "drop"
    drop.mkdir()
    rows.iloc[: len(rows) // 2].to_csv(drop / "part1.csv", index=False)
    rows.iloc[len(rows) // 2 :].to_csv(drop / "part2.csv", index=False)

    doc = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    del doc["time_column"], doc["features"]["datetime_parts"]
    doc.update(name="flights_untimed", contract=str(tmp_path / "contract.yaml"),
               source={"path": "landing/untimed/*.parquet", "format": "parquet"},
               split={"holdout_fraction": 0.25, "seed": 5})
    config = tmp_path / "untimed.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(config))

    assert main(["land", "--config", str(config), "--from", str(drop)]) == 0
    assert main(["contract", "infer", "--config", str(config)]) == 0
    assert main(["materialize", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "promoted v1 to champion" in out, out

    assert main(["reproduce", "1", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "REPRODUCED flights_untimed v1" in out and "bit-identical" in out, out
    # The manifest says how the split was made and that the config is not pinned by git.
    manifest = yaml.safe_load(next(data_dir.glob("mlflow/artifacts/**/manifest.yaml")).read_text())
    assert manifest["split"]["strategy"] == "stratified"
    balance = manifest["split"]["holdout_class_balance"]
    assert set(balance) == {"0", "1"} and sum(balance.values()) == manifest["split"]["holdout_rows"]
    assert manifest["seeds"]["split"] == 5
    assert manifest["inputs"]["config"]["path"] == str(config)
    assert manifest["git"]["dirty"] is True
