"""One contract guards training data and inference requests alike."""

from __future__ import annotations

import gc
import weakref

import pandas as pd
import pytest

from mlops_pipeline.data.contract import (
    ContractError,
    infer_contract,
    left_as_object,
    load_contract,
    null_rate_violations,
    validate,
    write_contract,
)


@pytest.fixture
def rows(flights, spec) -> pd.DataFrame:
    return flights[flights["month"] == 2].dropna(subset=["arr_delay"]).head(500)[spec.source_columns].copy()


def test_the_committed_contract_accepts_every_month_of_real_data(flights, spec, contract):
    validated = validate(flights.dropna(subset=["arr_delay"])[spec.source_columns], contract.schema)
    assert len(validated) > 300_000
    assert not null_rate_violations(flights[flights["month"] == 12], contract, contract.columns)


def test_a_validated_frame_is_freed_as_soon_as_it_is_dropped(rows, contract):
    # pandera caches an accessor holding the frame on it: a cycle only a full collection frees
    # (~0.5 GB of training and drift frames lingered in a run of the loop).
    gc.disable()
    try:
        validated = validate(rows, contract.schema)
        assert len(validated) == len(rows)
        freed = weakref.ref(validated)
        del validated
        assert freed() is None
    finally:
        gc.enable()


def test_wrong_type_is_named_with_column_check_and_value(rows, contract):
    rows["distance"] = rows["distance"].astype(str)
    rows.loc[rows.index[3], "distance"] = "far"
    with pytest.raises(ContractError) as err:
        validate(rows, contract.schema)
    assert "column 'distance'" in str(err.value)
    cases = err.value.failure_cases
    assert {"column", "check", "failure_case", "index"} <= set(cases.columns)
    assert "far" in set(cases.loc[cases["column"] == "distance", "failure_case"].astype(str))


def test_missing_column_and_domain_violations_are_reported_together(rows, contract):
    rows = rows.drop(columns=["dest"])
    rows.loc[rows.index[0], "hour"] = 31
    with pytest.raises(ContractError) as err:
        validate(rows, contract.schema)
    message = str(err.value)
    assert "column 'dest'" in message and "column_in_dataframe" in message
    assert "column 'hour'" in message and "in_range" in message


def test_inference_validates_features_only_with_the_same_definitions(rows, spec, contract):
    features = contract.for_columns(spec.features.columns)
    assert set(features.columns) == set(spec.features.columns)
    assert features.columns["distance"] is not None
    request = rows[spec.features.columns].head(3).copy()
    request["distance"] = request["distance"].astype(float)  # JSON numbers arrive as floats
    assert validate(request, features)["distance"].dtype == "int64"
    request["time_hour"] = request["time_hour"].astype(str)  # JSON timestamps arrive as text
    assert str(validate(request, features)["time_hour"].dtype) == "datetime64[ns]"


def test_null_spike_is_a_violation_naming_the_column(rows, contract):
    assert null_rate_violations(rows, contract, contract.columns) == {}
    rows.loc[rows.index[:100], "temp"] = None
    violations = null_rate_violations(rows, contract, contract.columns)
    assert list(violations) == ["temp"]
    rate, limit = violations["temp"]
    assert rate == pytest.approx(0.2) and limit == pytest.approx(0.05)


def test_inferred_draft_drops_observed_ranges_and_round_trips(flights, spec, tmp_path):
    doc = infer_contract(flights[flights["month"] == 1], spec)
    path = tmp_path / "contract.yaml"
    write_contract(doc, path)
    loaded = load_contract(spec, path)
    assert set(loaded.columns) == set(spec.source_columns)
    assert all(not col.checks for col in loaded.schema.columns.values())  # no hard-coded min/max
    assert loaded.null_limit("wind_gust") > 0.5  # mostly-null column gets a limit it can live with
    july = flights[flights["month"] == 7].dropna(subset=["arr_delay"])
    validate(july[spec.source_columns], loaded.schema)  # a later month still passes the draft


def test_a_missing_contract_says_how_to_make_one(spec, tmp_path):
    with pytest.raises(FileNotFoundError, match="mlops-pipeline contract infer"):
        load_contract(spec, tmp_path / "nope.yaml")


def test_inference_parses_time_columns_and_drafts_the_domain_with_a_margin(flights, spec):
    as_csv = flights[flights["month"] == 1].copy()
    as_csv["time_hour"] = as_csv["time_hour"].astype(str)  # a CSV has text, not timestamps
    as_csv["booked"] = "2012-12-01 10:00"  # a date column the config does not name
    wide = spec.model_copy(update={"key_columns": [*spec.key_columns, "booked"]})
    doc = infer_contract(as_csv, wide)
    columns = doc["schema"]["columns"]
    assert columns["time_hour"]["dtype"].startswith("datetime64")
    assert columns["booked"]["dtype"].startswith("datetime64")
    assert set(left_as_object(doc)) == {"carrier", "origin", "dest"}
    domain = doc["domain"]
    assert set(domain["categories"]["origin"]) == {"EWR", "JFK", "LGA"}
    temp = as_csv["temp"]
    span = temp.max() - temp.min()
    assert domain["ranges"]["temp"]["min"] <= temp.min() - 0.09 * span  # widened, for review
    assert domain["ranges"]["temp"]["max"] >= temp.max() + 0.09 * span
    assert domain["ranges"]["distance"]["min"] >= 0  # nothing observed was negative
    window = domain["time_window"]["time_hour"]
    assert pd.Timestamp(window["start"]) < pd.Timestamp("2013-01-01")
    assert pd.Timestamp(window["end"]) >= pd.Timestamp("2014-01-31")  # a year's horizon


def test_an_unparseable_time_column_is_named_when_inferring(flights, spec):
    rows = flights[flights["month"] == 1].head(200).copy()
    rows["time_hour"] = rows["time_hour"].astype(str)
    rows.loc[rows.index[5], "time_hour"] = "yesterday-ish"
    with pytest.raises(ContractError, match="column 'time_hour'.*yesterday-ish"):
        infer_contract(rows, spec)


def test_the_committed_contract_has_a_reviewed_domain(contract):
    assert {"carrier", "origin", "dest"} <= set(contract.domain.categories)
    assert contract.domain.ranges["humid"][1] == 100.0  # reviewed: the draft's margin went past 100%
    start, end = contract.domain.time_window["time_hour"]
    assert start < pd.Timestamp("2013-01-01") and pd.Timestamp("2013-12-31 23:00") < end


def test_a_request_with_an_unparseable_timestamp_is_refused_naming_the_field(rows, spec, contract):
    from mlops_pipeline.serving.inputs import RecordChecker, validate_batch

    checker = RecordChecker(contract.for_columns(spec.features.columns), spec.features.columns)
    records = rows[spec.features.columns].head(2).astype(object)
    records["time_hour"] = records["time_hour"].astype(str)
    good, bad = records.to_dict("records")
    bad["time_hour"] = "not a date"
    parsed = [checker.parse(pd.Series([r]).to_json(orient="values").encode(), 10)[0] for r in (good, bad)]
    frame, errors = validate_batch(checker, parsed)
    assert frame is not None and len(frame) == 1  # the other request is answered
    assert errors[0] == [] and {e.field for e in errors[1]} == {"time_hour"}
    assert any(e.value == "not a date" for e in errors[1])
