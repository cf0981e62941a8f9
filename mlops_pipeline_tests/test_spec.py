"""A dataset is described by one YAML file; bad files fail loudly, naming the file and field."""

from __future__ import annotations

import pytest
import yaml

from mlops_pipeline.spec import PROJECT_ROOT, load_spec


def test_both_shipped_configs_load_with_their_task():
    cls = load_spec("data/configs/flights.yaml")
    reg = load_spec("data/configs/flights_regression.yaml")
    assert (cls.task, cls.target.name) == ("classification", "delayed")
    assert cls.target.expression == "arr_delay > 15"
    assert (reg.task, reg.target.name, reg.target.expression) == ("regression", "arr_delay", None)
    assert cls.contract_path() == reg.contract_path() == PROJECT_ROOT / "data/contracts/flights.yaml"
    assert cls.fingerprint() != reg.fingerprint()


def test_post_departure_columns_are_never_features():
    spec = load_spec("data/configs/flights.yaml")
    assert not {"dep_time", "dep_delay", "arr_time", "air_time", "arr_delay"} & set(spec.features.columns)


def _write(tmp_path, change) -> str:
    doc = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    change(doc)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_a_target_leaking_into_features_is_refused(tmp_path):
    path = _write(tmp_path, lambda d: d["features"]["numerical"].append("arr_delay"))
    with pytest.raises(ValueError, match=r"(?s)cfg\.yaml.*target or its source.*arr_delay"):
        load_spec(path)


def test_unknown_fields_and_missing_files_name_the_problem(tmp_path):
    path = _write(tmp_path, lambda d: d.update(taks="classification"))
    with pytest.raises(ValueError, match=r"(?s)cfg\.yaml.*taks"):
        load_spec(path)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_spec(tmp_path / "nope.yaml")


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["target"].pop("name"),
     "target.name: required — name of the target column the model learns"),
    (lambda d: d["split"].update(holdout_share=0.2),
     "split.holdout_share: unknown key — allowed here: strategy, holdout_fraction, seed, group_column"),
    (lambda d: d["features"]["datetime_parts"].update(time_hour=["weekday"]),
     "features.datetime_parts.time_hour[0]: 'weekday' is not allowed — use one of dayofweek, hour, "
     "month or dayofyear"),
    (lambda d: d["split"].update(holdout_fraction="a fifth"),
     "split.holdout_fraction: should be a valid number"),
    (lambda d: d["split"].update(strategy="group"),
     "split.group_column: required with strategy: group"),
    (lambda d: (d.pop("time_column"), d["split"].update(strategy="time")),
     "split.strategy: time needs `time_column` — set time_column, or choose random, stratified or group"),
])
def test_a_bad_config_is_one_line_naming_file_field_and_fix(tmp_path, change, expected):
    from mlops_pipeline.spec import ConfigError

    path = _write(tmp_path, change)
    with pytest.raises(ConfigError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {expected}"), message
    assert "\n" not in message


def test_without_a_time_column_the_default_split_depends_on_the_task(tmp_path):
    spec = load_spec(_write(tmp_path, lambda d: d.pop("time_column")))
    assert spec.time_column is None and spec.split_strategy == "stratified"
    assert spec.config_file == tmp_path / "cfg.yaml"
    assert load_spec("data/configs/flights.yaml").split_strategy == "time"


def test_required_source_columns_name_every_column_the_spec_reads(tmp_path):
    from mlops_pipeline.spec import expression_columns, required_source_columns

    spec = load_spec("data/configs/flights.yaml")
    required = required_source_columns(spec)
    assert required["arr_delay"] == "target.expression"  # a derived target needs its source
    assert "delayed" not in required  # ...but not the derived name itself
    assert required["time_hour"] == "features.datetime_parts"
    assert required["flight"] == "key_columns"
    assert set(spec.features.categorical + spec.features.numerical) <= set(required)
    reg = required_source_columns(load_spec("data/configs/flights_regression.yaml"))
    assert reg["arr_delay"] == "target.name"
    assert expression_columns("`a b` > 15 and abs(c) < @x or d.isna()") == ["a b", "c", "d"]


def test_a_missing_column_is_one_line_with_the_closest_names():
    from mlops_pipeline.spec import ColumnsError, ConfigError, check_columns, required_source_columns

    spec = load_spec("data/configs/flights.yaml")
    columns = [c for c in required_source_columns(spec) if c != "dest"] + ["dset", "dep_delay"]
    check_columns(spec, [*columns, "dest"], "the landed data")  # all there: no error
    with pytest.raises(ColumnsError) as err:
        check_columns(spec, columns, "the landed data")
    text = str(err.value)
    assert isinstance(err.value, ConfigError) and "\n" not in text
    assert text.split("flights.yaml: ", 1)[1].startswith(
        "features.categorical: 'dest' is not a column of the landed data (closest: 'dset')")
