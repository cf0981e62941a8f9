"""Splits are a function of row content: time, random, stratified and group, on small frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.data.preparation import SPLIT_COLUMN, prepare
from mlops_pipeline.spec import DatasetSpec


def _spec(**changes) -> DatasetSpec:
    doc = {
        "name": "toy",
        "task": "classification",
        "source": {"path": "landing/toy/*.csv", "format": "csv"},
        "target": {"name": "label"},
        "features": {"categorical": ["colour"], "numerical": ["x"]},
        "contract": "data/contracts/toy.yaml",
        "gate": {"roc_auc": {"floor": 0.5}},
    }
    for key, value in changes.items():
        doc[key] = value
    return DatasetSpec.model_validate(doc)


def _frame(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": np.arange(n),
        "customer": rng.integers(0, 60, n),
        "colour": rng.choice(["red", "green", "blue"], n),
        "x": rng.normal(size=n),
        "label": (rng.random(n) < 0.15).astype(int),  # imbalanced: 15% positives
        "when": pd.date_range("2024-01-01", periods=n, freq="h"),
    })


def _holdout(prepared) -> pd.DataFrame:
    rows = prepared.frame[prepared.frame[SPLIT_COLUMN] == "holdout"]
    return rows.drop(columns=SPLIT_COLUMN).sort_values("id").reset_index(drop=True)


def test_the_default_strategy_follows_the_time_column_and_the_task():
    assert _spec(time_column="when").split_strategy == "time"
    assert _spec().split_strategy == "stratified"
    assert _spec(task="regression", target={"name": "x"},
                 features={"categorical": ["colour"]}, gate={"r2": {}}).split_strategy == "random"


def test_time_split_holds_out_the_latest_rows():
    p = prepare(_frame(), _spec(time_column="when"))
    hold = _holdout(p)
    assert p.strategy == "time" and len(hold) == 200
    assert hold["when"].min() == pd.Timestamp(p.cutoff)
    assert p.frame.loc[p.frame[SPLIT_COLUMN] == "train", "when"].max() < hold["when"].min()


def test_random_split_holds_out_about_the_fraction_and_the_seed_changes_it():
    df = _frame(4000)
    a = prepare(df, _spec(split={"strategy": "random", "holdout_fraction": 0.25}))
    b = prepare(df, _spec(split={"strategy": "random", "holdout_fraction": 0.25, "seed": 1}))
    assert a.summary["strategy"] == "random" and a.cutoff is None
    assert 0.22 < len(_holdout(a)) / len(df) < 0.28
    assert not _holdout(a)["id"].equals(_holdout(b)["id"])
    again = prepare(df, _spec(split={"strategy": "random", "holdout_fraction": 0.25}))
    pd.testing.assert_frame_equal(a.frame, again.frame)


def test_stratified_split_takes_the_rounded_fraction_of_every_class():
    df = _frame(1003)
    p = prepare(df, _spec(split={"holdout_fraction": 0.3}))
    assert p.strategy == "stratified"
    counts = df["label"].value_counts()
    expected = {str(c): int(round(0.3 * n)) for c, n in counts.items()}
    assert p.summary["holdout_class_balance"] == expected
    assert p.summary["holdout_rows"] == sum(expected.values())


def test_group_split_never_puts_a_group_on_both_sides():
    spec = _spec(split={"strategy": "group", "group_column": "customer", "holdout_fraction": 0.3})
    p = prepare(_frame(3000), spec)
    sides = p.frame.groupby("customer")[SPLIT_COLUMN].nunique()
    assert (sides == 1).all()
    held = p.frame.loc[p.frame[SPLIT_COLUMN] == "holdout", "customer"].nunique()
    assert 0 < held < p.frame["customer"].nunique()
    with pytest.raises(KeyError, match="split.group_column 'customer' is not a column"):
        prepare(_frame().drop(columns="customer"), spec)


@pytest.mark.parametrize("split", [{"strategy": "random"}, {"strategy": "stratified"},
                                   {"strategy": "group", "group_column": "customer"}])
@pytest.mark.parametrize("keys", [[], ["id"], ["customer"]])  # customer: a key rows share
def test_the_same_rows_in_another_order_give_the_same_split_and_frame(split, keys):
    """Batches landed in another order and rows shuffled: the same rows are holdout, and the
    prepared frame (row order included, so training sees the same input) is identical."""
    df = _frame(800)
    spec = _spec(split=split, key_columns=keys)
    first = prepare(pd.concat([df.iloc[:300], df.iloc[300:]], ignore_index=True), spec)
    reordered = pd.concat([df.iloc[300:], df.iloc[:300]]).sample(frac=1, random_state=3)
    second = prepare(reordered.reset_index(drop=True), spec)
    pd.testing.assert_frame_equal(_holdout(first), _holdout(second))
    pd.testing.assert_frame_equal(first.frame, second.frame)
    if keys == ["id"]:  # with a unique key only the key decides: other columns may change freely
        nudged = df.assign(x=df["x"] + 1.0)
        assert _holdout(prepare(nudged, spec))["id"].tolist() == _holdout(first)["id"].tolist()


def test_a_spec_that_cannot_split_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"split\.strategy: time needs `time_column`"):
        _spec(split={"strategy": "time"})
    with pytest.raises(ValueError, match=r"split\.group_column: required with strategy: group"):
        _spec(split={"strategy": "group"})
    with pytest.raises(ValueError, match=r"stratified needs task: classification"):
        _spec(task="regression", target={"name": "x"}, features={"categorical": ["colour"]},
              gate={"r2": {}}, split={"strategy": "stratified"})
