"""Run through Dagster (not the CLI's preflight), a config naming a column the snapshot lacks stops
at training_features with the same one line `mlops-pipeline materialize` prints: the spec field,
the column and the closest names, not a KeyError from deep in training (issue 24 item 3)."""

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
