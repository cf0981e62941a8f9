"""The training data's checks over the stored table, a chunk at a time, give what the same checks
give over the whole frame in memory: verdicts, descriptions and numbers, at any chunk size."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.data.batch_checks import check_overall, duplicate_findings, summary
from mlops_pipeline.data.contract import (
    ContractError,
    infer_contract,
    load_contract,
    null_count_violations,
    null_rate_violations,
    validate,
    write_contract,
)
from mlops_pipeline.data.feature_checks import check_features
from mlops_pipeline.data.features import iter_features, prepare_features
from mlops_pipeline.data.preparation import SPLIT_COLUMN
from mlops_pipeline.data.snapshots import canonicalize, content_id
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.spec import DatasetSpec
from mlops_pipeline_tests.data.test_features import _spec as toy_spec

N = 90


def _spec(**changes) -> DatasetSpec:
    """The toy dataset of `test_features`, with a time column and checks sized for small data."""
    return toy_spec(**{"time_column": "when", "checks": {"min_rows": 20, "class_balance_min_rows": 10},
                       **changes})


def _clean(n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "id": np.arange(n),
        "colour": rng.choice(["red", "green", "blue"], n).astype(object),
        "x": rng.normal(size=n),
        "label": (np.arange(n) % 3 == 0).astype(float),
        "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) * 5, unit="h"),
    })
    df.loc[5, "colour"] = None  # nullable in the contract, far under its limit
    return df


def _wrong_type(df):
    df["x"] = df["x"].map(lambda v: f"{v:.3f}").astype(object)
    df.loc[47, "x"] = "n/a"  # one row in one chunk fails the contract's float
    return df


def _nulls(df):
    df.loc[df.index % 4 == 1, "colour"] = None
    return df


def _duplicated_keys(df):
    df.loc[[40, 41, 70], "id"] = [3, 3, 12]
    return df


def _duplicated_rows(df):
    # rows 10..19 again in place of 50..59: the same content, so the same split too
    return pd.concat([df.iloc[:50], df.iloc[10:20], df.iloc[60:]], ignore_index=True)


def _unseen(df):
    df.loc[df.index % 9 == 2, "colour"] = "purple"
    df.loc[80, "colour"] = "mauve"
    return df


def _out_of_range(df):
    df.loc[[33, 61, 62, 88], "x"] = [1e6, -1e6, 2e6, 1e6]
    return df


def _late(df):
    df.loc[[20, 75], "when"] = [pd.Timestamp("2090-05-01 03:00"), pd.Timestamp("2091-01-01")]
    return df


def _one_class(df):
    df["label"] = 0.0
    return df


CASES = {
    "clean": (lambda df: df, {}),
    "wrong_type": (_wrong_type, {}),
    "too_many_nulls": (_nulls, {}),
    "duplicated_keys": (_duplicated_keys, {}),
    "no_keys_clean": (lambda df: df, {"key_columns": []}),
    "no_keys_duplicated_rows": (_duplicated_rows, {"key_columns": []}),
    "unseen_category": (_unseen, {}),
    "out_of_range": (_out_of_range, {}),
    "time_window": (_late, {}),
    "single_class": (_one_class, {}),
    "too_few_rows": (lambda df: df, {"checks": {"min_rows": 1000}}),
}


def _whole_frame(df: pd.DataFrame, spec: DatasetSpec, contract) -> dict[str, tuple]:
    """What `training_features_checks` computed on the prepared frame in memory:
    {check: (passed, description, metadata)}."""
    out = {}
    try:
        validate(df, contract.schema)
        out["contract_schema"] = (True, None, None)
    except ContractError as exc:
        out["contract_schema"] = (False, str(exc), exc.failure_cases.reset_index(drop=True))
    worst = float(df[[c for c in contract.columns if c in df]].isna().mean().max())
    out["null_rates"] = (null_rate_violations(df, contract, contract.columns), worst)
    counts = df[SPLIT_COLUMN].value_counts()
    train, holdout = int(counts.get("train", 0)), int(counts.get("holdout", 0))
    out["min_rows"] = (len(df) >= spec.checks.min_rows and train > 0 and holdout > 0,
                       f"{len(df)} labelled rows (train {train}, holdout {holdout}); "
                       f"minimum {spec.checks.min_rows}",
                       {"rows": len(df), "train_rows": train, "holdout_rows": holdout})
    keys = [c for c in spec.key_columns if c in df.columns]
    if spec.key_columns:
        duplicates = int(df.duplicated(subset=keys).sum())
        out["unique_keys"] = (duplicates == 0, f"{duplicates} rows duplicate the key ({', '.join(keys)})",
                              {"duplicate_rows": duplicates})
    else:
        dups = duplicate_findings("(all batches)", df, spec, check="unique_keys")
        duplicates = int(df.astype(str).duplicated().sum()) if dups else 0
        out["unique_keys"] = (not dups, summary("unique_keys", dups, "no key columns; duplicated rows"),
                              {"duplicate_rows": duplicates})
    for name, findings in check_overall(df, contract, spec).items():
        out[name] = (not findings, summary(name, findings, f"{len(df)} rows"),
                     {"failing_columns": ", ".join(sorted({str(f.column) for f in findings if f.column}))})
    return out


def _stored(tmp_path, case: str):
    return _store(tmp_path, *CASES[case])


def _store(tmp_path, change, spec_changes: dict):
    spec = _spec(**spec_changes)
    storage = Storage(root=str(tmp_path))
    path = tmp_path / "toy.yaml"
    write_contract(infer_contract(_clean(), spec), path)
    contract = load_contract(spec, path)
    df = change(_clean())
    sid = content_id(df)
    storage.write_snapshot(sid, canonicalize(df))
    return storage, prepare_features(storage, sid, spec, chunk_rows=13), spec, contract


def _chunked(checks) -> dict[str, tuple]:
    error = checks.contract_error
    out = {"contract_schema": (True, None, None) if error is None
           else (False, str(error), error.failure_cases.reset_index(drop=True)),
           "null_rates": (checks.null_violations, checks.worst_null_rate)}
    for o in checks.outcomes:
        out[o.name] = (o.passed, o.description, o.metadata)
    return out


FAILS = {
    "clean": set(), "no_keys_clean": set(),
    "wrong_type": {"contract_schema"}, "too_many_nulls": {"null_rates"},
    "duplicated_keys": {"unique_keys"}, "no_keys_duplicated_rows": {"unique_keys"},
    "unseen_category": {"unseen_categories"}, "out_of_range": {"out_of_range"},
    "time_window": {"time_window"}, "single_class": {"class_balance"}, "too_few_rows": {"min_rows"},
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("chunk_rows", [7, 100_000])
def test_chunked_checks_equal_the_whole_frame_checks(tmp_path, case, chunk_rows):
    storage, info, spec, contract = _stored(tmp_path, case)
    whole = pd.concat(iter_features(storage, info), ignore_index=True)
    checks = check_features(storage, info, spec, contract, chunk_rows=chunk_rows)
    expected, got = _whole_frame(whole, spec, contract), _chunked(checks)

    assert checks.rows == len(whole) == info.rows
    assert list(got) == list(expected)
    for name in expected:
        if name == "contract_schema":
            assert got[name][:2] == expected[name][:2]
            if expected[name][2] is not None:
                pd.testing.assert_frame_equal(got[name][2], expected[name][2], check_dtype=False)
        elif name == "null_rates":
            assert got[name][0] == expected[name][0]
            assert math.isclose(got[name][1], expected[name][1])
        else:
            assert got[name] == expected[name], name
    failing = {n for n, r in got.items() if (bool(r[0]) if n == "null_rates" else not r[0])}
    assert failing == FAILS[case]
    warn_only = {o.name for o in checks.outcomes if o.warn_only}
    assert warn_only == (set() if spec.key_columns else {"unique_keys"})


def test_the_findings_name_what_failed(tmp_path):
    storage, info, spec, contract = _stored(tmp_path, "unseen_category")
    got = _chunked(check_features(storage, info, spec, contract, chunk_rows=7))
    assert "'purple'" in got["unseen_categories"][1] and got["unseen_categories"][2] == {
        "failing_columns": "colour"}
    storage, info, spec, contract = _stored(tmp_path / "dups", "no_keys_duplicated_rows")
    got = _chunked(check_features(storage, info, spec, contract, chunk_rows=7))
    assert got["unique_keys"][2] == {"duplicate_rows": 10}
    storage, info, spec, contract = _stored(tmp_path / "late", "time_window")
    got = _chunked(check_features(storage, info, spec, contract, chunk_rows=7))
    assert "2 timestamp(s)" in got["time_window"][1] and "2091-01-01" in got["time_window"][1]


def test_a_contract_failure_in_a_later_chunk_names_its_row_in_the_table(tmp_path):
    storage, info, spec, contract = _stored(tmp_path, "wrong_type")
    whole = pd.concat(iter_features(storage, info), ignore_index=True)
    bad = int(np.flatnonzero((whole["x"] == "n/a").to_numpy())[0])
    checks = check_features(storage, info, spec, contract, chunk_rows=7)
    assert bad >= 7  # not in the first chunk
    assert set(checks.contract_error.failure_cases["index"]) == {bad}


def test_null_rates_from_counts_follow_the_frame_rule(tmp_path):
    _, _, _, contract = _stored(tmp_path, "clean")
    assert null_count_violations({"x": 0}, 0, contract) == {}  # no rows, no violation
    assert null_count_violations({"x": 1, "colour": 2}, 20, contract) == {"colour": (0.1, 0.05)}
    frame = pd.DataFrame({"x": [None] + [1.0] * 19, "colour": [None, None] + ["red"] * 18})
    assert null_rate_violations(frame, contract, ["x", "colour"]) == {"colour": (0.1, 0.05)}


def test_a_table_without_labelled_rows_fails_only_min_rows(tmp_path):
    storage, info, spec, contract = _store(tmp_path, lambda df: df.assign(label=np.nan), {})
    checks = check_features(storage, info, spec, contract, chunk_rows=7)
    got = _chunked(checks)
    assert checks.rows == info.rows == 0
    assert {n for n, r in got.items() if n != "null_rates" and not r[0]} == {"min_rows"}
    assert got["null_rates"][0] == {} and got["unique_keys"][2] == {"duplicate_rows": 0}
