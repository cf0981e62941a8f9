"""Run through Dagster (not the CLI's preflight), a config naming a column the snapshot lacks (or f1
on a multi-class target) stops at training_features with the same one line `mlops-pipeline
materialize` prints (the spec field, the column and the closest names), not a KeyError from deep in
training (issue 24 item 3)."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from mlops_pipeline.cli.run_output import error_summary
from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.spec import PROJECT_ROOT


def _failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    return {e.step_key: error_summary(e.event_specific_data.error)
            for e in result.all_events if e.event_type_value == "STEP_FAILURE"}


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["features"].update(categorical=["carrier", "origin", "dset"]),
     "features.categorical: 'dset' is not a column of snapshot"),
    (lambda d: d["target"].update(name="arr_dely"),
     "target.name: 'arr_dely' is not a column of snapshot"),
], ids=["feature", "target"])
def test_a_missing_config_column_fails_training_features_in_one_line(tmp_path, data_dir, land,
                                                                      monkeypatch, change, expected):
    doc = yaml.safe_load((PROJECT_ROOT / "data/configs/flights_regression.yaml").read_text())
    change(doc)
    config = tmp_path / "wrong.yaml"
    config.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(config))
    land(months=(1, 2), sample=0.03)

    job = build_definitions().resolve_job_def("mlops_loop").get_subset(
        asset_selection={dg.AssetKey("dataset_snapshot"), dg.AssetKey("training_features")})
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)

    assert not result.success
    failures = _failures(result)
    assert list(failures) == ["training_features"], failures
    message = failures["training_features"]
    assert expected in message and "\n" not in message and "closest:" in message, message
    assert message.startswith(f"{config}: "), message  # the one line, without the class name


def test_f1_on_a_multi_class_target_fails_training_features_in_one_line(tmp_path, data_dir, monkeypatch):
    import numpy as np
    import statsmodels.api as sm

    from mlops_pipeline.data.contract import infer_contract, write_contract
    from mlops_pipeline.spec import load_spec
    from mlops_pipeline_tests.defs.test_task_types_loop import CONFIG, FEATURES, OCCUPATIONS

    frame = sm.datasets.fair.load_pandas().data.head(1500).copy()
    frame["occupation"] = frame["occupation"].astype(int).map(OCCUPATIONS)
    frame.insert(0, "id", np.arange(len(frame), dtype="int64"))
    (data_dir / "landing" / "fair").mkdir(parents=True)
    frame.to_parquet(data_dir / "landing" / "fair" / "batch_001.parquet", index=False)
    text = CONFIG.format(features=", ".join(FEATURES), contract=tmp_path / "contract.yaml")
    config = tmp_path / "fair.yaml"
    config.write_text(text.replace("accuracy: {floor: 0.3}", "f1: {floor: 0.3}"))
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(config))
    spec = load_spec(config)
    write_contract(infer_contract(frame, spec), spec.contract_path())

    job = build_definitions().resolve_job_def("mlops_loop").get_subset(
        asset_selection={dg.AssetKey("dataset_snapshot"), dg.AssetKey("training_features"),
                         dg.AssetKey("trained_model")})
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)

    failures = _failures(result)
    assert list(failures) == ["training_features"], failures
    assert failures["training_features"].startswith(
        f"{config}: gate.f1: gate metric 'f1' needs a binary target; this one has 6 classes"), failures
