"""The contract and null-rate check results the training data and production inputs share."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from mlops_pipeline.defs.checks import MAX_FAILURE_ROWS, contract_check, null_rate_check

SCHEMA = pa.DataFrameSchema({"distance": pa.Column(float, coerce=True), "carrier": pa.Column(str)})


def test_data_matching_the_contract_passes_with_the_given_text():
    frame = pd.DataFrame({"distance": [1, 2], "carrier": ["AA", "UA"]})
    result = contract_check("inference_contract", frame, SCHEMA, "2 production inputs match")
    assert result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.description == "2 production inputs match"


def test_data_breaking_the_contract_fails_naming_the_columns_and_the_failing_values():
    frame = pd.DataFrame({"distance": ["far"] * (MAX_FAILURE_ROWS + 5), "carrier": ["AA"] * 55})
    result = contract_check("contract_schema", frame, SCHEMA, "unused")
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert result.metadata["failing_columns"].value == "distance"
    table = result.metadata["failure_cases"]
    assert len(table.records) == MAX_FAILURE_ROWS
    assert {c.name for c in table.schema.columns} == {"column", "check", "failure_case", "index"}


def test_null_rates_over_their_limit_fail_naming_rate_and_limit():
    result = null_rate_check("null_rates", {"distance": (0.25, 0.1)}, "unused", worst_null_rate=0.25)
    assert not result.passed
    assert result.description == "null rate above limit: column 'distance' 25.0% > 10.0%"
    assert result.metadata["violations"].value == {"distance": {"rate": 0.25, "limit": 0.1}}
    assert result.metadata["worst_null_rate"].value == 0.25


def test_no_null_rate_violation_passes_with_the_given_text():
    result = null_rate_check("inference_null_rates", {}, "every feature is under its null-rate limit")
    assert result.passed and result.description == "every feature is under its null-rate limit"
    assert result.metadata["violations"].value == {}
