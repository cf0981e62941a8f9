"""The prepared table, built and read a chunk at a time, is exactly `prepare` in memory: the same
rows, split, order and counts, whatever the chunk size; the training sample is bounded, stratified,
seeded and drawn the same from the stored table and from memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.data.features import (
    prepare_features,
    read_features,
    sample_mask,
    sample_train,
    training_rows,
)
from mlops_pipeline.data.preparation import SPLIT_COLUMN, prepare
from mlops_pipeline.data.snapshots import canonicalize, content_id
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.spec import DatasetSpec


def _spec(**changes) -> DatasetSpec:
    doc = {
        "name": "toy",
        "task": "classification",
        "source": {"path": "landing/toy/*.parquet", "format": "parquet"},
        "target": {"name": "label"},
        "features": {"categorical": ["colour"], "numerical": ["x"]},
        "key_columns": ["id"],
        "contract": "data/contracts/toy.yaml",
        "gate": {"roc_auc": {"floor": 0.5}},
    }
    doc.update(changes)
    return DatasetSpec.model_validate(doc)


def _frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "id": rng.permutation(n),
        "colour": rng.choice(["red", "green", "blue"], n).astype(object),
        "x": rng.normal(size=n),
        "label": (rng.random(n) < 0.2).astype(float),
        "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 500, n), unit="h"),
    })
    df.loc[rng.random(n) < 0.05, "label"] = np.nan  # unlabelled rows are dropped
    df.loc[:50, "colour"] = None  # the first chunk's text column starts with nulls
    return df


def _stored(tmp_path, df: pd.DataFrame) -> tuple[Storage, str]:
    storage = Storage(root=str(tmp_path))
    sid = content_id(df)
    # Stored in an order no split may depend on: reversed.
    storage.write_snapshot(sid, canonicalize(df).iloc[::-1].reset_index(drop=True))
    return storage, sid


SPECS = {
    "time": dict(time_column="when"),
    "stratified": dict(split={"strategy": "stratified", "holdout_fraction": 0.25}),
    "random": dict(split={"strategy": "random", "holdout_fraction": 0.3}),
    "regression": dict(task="regression", target={"name": "x"}, features={"categorical": ["colour"]},
                       gate={"r2": {}}, time_column="when"),
}


@pytest.mark.parametrize("kind", sorted(SPECS))
@pytest.mark.parametrize("chunk_rows", [170, 10_000])
def test_streamed_preparation_equals_prepare_in_memory(tmp_path, kind, chunk_rows):
    spec = _spec(**SPECS[kind])
    storage, sid = _stored(tmp_path, _frame())
    expected = prepare(canonicalize(storage.read_snapshot(sid)), spec)
    info = prepare_features(storage, sid, spec, chunk_rows=chunk_rows)

    got = read_features(storage, info, spec, chunk_rows=chunk_rows)
    pd.testing.assert_frame_equal(got, expected.frame, check_dtype=False)
    assert (info.rows, info.dropped_unlabelled, info.strategy) == (
        len(expected.frame), expected.dropped_unlabelled, expected.strategy)
    assert info.summary == expected.summary
    assert info.cutoff == expected.cutoff
    holdout = read_features(storage, info, spec, "holdout", columns=["x", "colour"], chunk_rows=chunk_rows)
    pd.testing.assert_frame_equal(
        holdout, expected.frame.loc[expected.frame[SPLIT_COLUMN] == "holdout", ["x", "colour"]]
        .reset_index(drop=True), check_dtype=False)


def test_a_stored_preparation_is_reused_and_a_changed_spec_prepares_again(tmp_path):
    storage, sid = _stored(tmp_path, _frame())
    spec = _spec(time_column="when")
    first = prepare_features(storage, sid, spec)
    stamp = (tmp_path / first.location.split(str(tmp_path))[-1].lstrip("/")).stat().st_mtime_ns
    again = prepare_features(storage, sid, spec)
    assert again == first
    assert (tmp_path / again.location.split(str(tmp_path))[-1].lstrip("/")).stat().st_mtime_ns == stamp
    other = prepare_features(storage, sid, _spec(time_column="when", split={"holdout_fraction": 0.5}))
    assert other.location != first.location and other.holdout_rows > first.holdout_rows


def test_a_missing_label_column_is_named(tmp_path):
    storage, sid = _stored(tmp_path, _frame().drop(columns="label"))
    with pytest.raises(KeyError, match="label"):
        prepare_features(storage, sid, _spec(time_column="when"))


def test_sample_is_bounded_stratified_and_seeded():
    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**63, 10_000, dtype=np.uint64)
    labels = (rng.random(10_000) < 0.1).astype(int)
    mask = sample_mask(hashes, labels, 1000, seed=42)
    assert mask.sum() == 1000
    assert labels[mask].sum() == round(1000 * labels.sum() / 10_000)  # class shares kept
    assert (sample_mask(hashes, labels, 1000, seed=42) == mask).all()
    assert (sample_mask(hashes, labels, 1000, seed=7) != mask).any()
    assert sample_mask(hashes, labels, None, seed=42).all()
    assert sample_mask(hashes, labels, 20_000, seed=42).all()


@pytest.mark.parametrize("kind", ["time", "stratified", "regression"])
def test_the_training_sample_is_the_same_streamed_and_in_memory(tmp_path, kind):
    spec = _spec(**SPECS[kind], model={"seed": 3, "max_train_rows": 500})
    storage, sid = _stored(tmp_path, _frame())
    info = prepare_features(storage, sid, spec, chunk_rows=300)

    streamed, sample = training_rows(storage, info, spec, seed=3, chunk_rows=300)
    in_memory, again = sample_train(prepare(canonicalize(storage.read_snapshot(sid)), spec).frame, spec, 3)
    assert sample == again and sample.rows == 500 and sample.of == info.train_rows
    pd.testing.assert_frame_equal(streamed, in_memory.reset_index(drop=True), check_dtype=False)
    assert (streamed[SPLIT_COLUMN] == "train").all()
    if spec.task == "classification":
        share = streamed["label"].mean()
        overall = read_features(storage, info, spec, "train")["label"].mean()
        assert abs(share - overall) < 0.005
    other, _ = training_rows(storage, info, spec, seed=4, chunk_rows=300)
    assert set(other["id"]) != set(streamed["id"])
