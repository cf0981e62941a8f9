"""Distribution expectations on real data, without Dagster: a whole column rescaled (a unit change
inside the contract's ranges) blocks its batch naming file, column and factor; seasons and small
random batches do not."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from mlops_pipeline.data import expectations
from mlops_pipeline.data.batch_checks import check_batches, summary, unit_change_findings
from mlops_pipeline.data.contract import infer_contract, load_contract, write_contract
from mlops_pipeline.data.expectations import Expectations, infer_expectations
from mlops_pipeline.data.snapshots import Batch
from mlops_pipeline.spec import load_spec

NOW = pd.Timestamp("2026-01-01")
#: mph -> m/s, miles -> km, hPa -> inHg, km -> m (or kg -> g): the issue's unit changes.
FACTORS = (0.447, 1.609, 0.0295, 1000)


def _name(month: int) -> str:
    return f"flights_2013_{month:02d}.parquet"


def _blocked(ex: Expectations, df: pd.DataFrame, time_column: str | None = None) -> list[tuple[str, float]]:
    return [(m.column, round(m.factor, 2)) for m in expectations.check(df, ex, time_column) if m.unit_change]


def _random_batches(df: pd.DataFrame, size: int, seed: int) -> list[pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(df))
    return [df.iloc[part] for part in np.array_split(order, len(df) // size)]


def _statsmodels(name: str) -> pd.DataFrame:
    return getattr(sm.datasets, name).load_pandas().data


def _factor_in(message: str) -> float:
    return float(re.search(r"values ~([0-9.e+-]+)x the reference: a unit change\?", message).group(1))


# ---- no false block -----------------------------------------------------------------------------
def test_the_twelve_months_landed_in_order_pass_the_shipped_contract(months, spec, contract):
    for m, df in months.items():
        assert unit_change_findings(_name(m), df, contract, spec.time_column) == [], m


def test_days_and_small_samples_of_months_pass_the_shipped_contract(flights, months, spec, contract):
    # A day's weather moves far more than a month's (the allowance follows the batch's time span);
    # a 2% sample of a month moves like the month, plus sampling noise (it follows the row count).
    days = [g for _, g in flights.groupby(["month", "day"])]
    samples = [df.sample(frac=0.02, random_state=m) for m, df in months.items()]
    assert len(days) == 365
    assert [b["time_hour"].min() for b in days + samples
            if unit_change_findings("b", b, contract, spec.time_column)] == []


def test_the_twelve_months_pass_a_contract_inferred_from_january_to_march(flights, months, spec):
    # What a user does: infer on the first months, then land month after month; July is ~2x
    # March's temperature, but its shape moved too (a season, not a unit).
    first = flights[flights["month"] <= 3][spec.source_columns]
    ex = Expectations.from_doc(infer_expectations(first, spec))
    assert ex.columns["temp"].allowed(28_000, 31.0, ex) < 1.6  # July is ~2x March ...
    assert {m: _blocked(ex, df, spec.time_column) for m, df in months.items()} == {m: [] for m in months}


@pytest.mark.parametrize("dataset, config", [("fair", "fair"), ("randhie", "randhie")])
def test_fair_and_randhie_in_random_batches_raise_no_false_block(dataset, config):
    ex = load_contract(load_spec(f"data/configs/{config}.yaml")).expectations
    df = _statsmodels(dataset)
    blocked = {
        (size, seed, i): _blocked(ex, b)
        for size in (200, 500) for seed in range(3)
        for i, b in enumerate(_random_batches(df, size, seed))
    }
    assert len(blocked) > 100
    assert {k: v for k, v in blocked.items() if v} == {}


def test_a_column_with_too_few_values_is_not_judged(months, contract):
    tiny = months[1].head(60).assign(wind_speed=lambda d: d["wind_speed"] * 1000)
    assert expectations.measure("wind_speed", tiny["wind_speed"], contract.expectations.columns[
        "wind_speed"], contract.expectations) is None
    assert unit_change_findings("tiny.parquet", tiny, contract) == []
    assert "fewer than 100 positive values in a batch is not judged" in summary(
        "batch_unit_change", [], "1 landed batch(es)")


# ---- every unit change blocks -------------------------------------------------------------------
@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("column", ["wind_speed", "distance", "pressure"])
def test_a_rescaled_column_blocks_every_month_naming_file_column_and_factor(
    months, spec, contract, column, factor
):
    for m, df in months.items():
        rescaled = df.assign(**{column: df[column] * factor})
        found = unit_change_findings(_name(m), rescaled, contract, spec.time_column)
        assert [(f.check, f.batch, f.column) for f in found] == [
            ("batch_unit_change", _name(m), column)], m
        # The fitted factor is the applied one, up to how far that month sits from the year.
        assert _factor_in(found[0].message) == pytest.approx(factor, rel=0.2), m
        sample = rescaled.sample(frac=0.05, random_state=m)  # a 5% sample of the month too
        assert [f.column for f in unit_change_findings("s", sample, contract, spec.time_column)] == [column]


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("dataset, config, columns", [
    ("fair", "fair", ["age"]),
    ("randhie", "randhie", ["lpi", "fmde", "disea"]),
])
def test_a_rescaled_column_blocks_random_batches_of_fair_and_randhie(dataset, config, columns, factor):
    ex = load_contract(load_spec(f"data/configs/{config}.yaml")).expectations
    for i, b in enumerate(_random_batches(_statsmodels(dataset), 300, seed=0)):
        for col in columns:
            [m] = [m for m in expectations.check(b.assign(**{col: b[col] * factor}), ex) if m.column == col]
            assert m.unit_change and m.factor == pytest.approx(factor, rel=0.1), (i, col, m)


def test_a_batch_in_m_per_s_is_blocked_by_the_per_batch_checks_with_the_factor(months, spec, contract):
    # The case: January's wind speed sent in m/s stays inside the contract's range ...
    in_ms = months[1].assign(wind_speed=months[1]["wind_speed"] * 0.447)
    lo, hi = contract.domain.ranges["wind_speed"]
    assert in_ms["wind_speed"].dropna().between(lo, hi).all()
    batches = [Batch(_name(m), months[m], NOW) for m in (2, 3)] + [Batch(_name(1), in_ms, NOW)]
    found = check_batches(batches, contract, spec, now=NOW)
    # ... and is refused by the batch check, naming file, column and factor, and only that.
    assert {k: [f.batch for f in v] for k, v in found.items() if v} == {
        "batch_unit_change": [_name(1)]}
    text = summary("batch_unit_change", found["batch_unit_change"], "3 landed batch(es)")
    assert "batch flights_2013_01.parquet, column 'wind_speed': values ~0.447x the reference: " \
        "a unit change?" in text
    assert "median 5.144 vs reference 10.36" in text


# ---- drafting -----------------------------------------------------------------------------------
def test_contract_infer_drafts_expectations_for_ratio_scale_measurements(flights, spec, tmp_path):
    doc = infer_contract(flights[flights["month"] <= 2], spec)
    columns = doc["expectations"]["columns"]
    assert {"distance", "wind_speed", "pressure", "precip", "temp"} <= set(columns)
    assert "dewp" not in columns  # below zero: not a ratio scale, a factor means nothing there
    assert not set(spec.key_columns) & set(columns)  # keys (month, flight, ...) are not measures
    assert "arr_delay" not in columns  # negative (early arrivals)
    path = tmp_path / "contract.yaml"
    write_contract(doc, path)
    loaded = load_contract(spec, path).expectations
    assert loaded.columns["wind_speed"].quantiles == tuple(columns["wind_speed"]["quantiles"])
    assert loaded.min_values == expectations.MIN_VALUES
