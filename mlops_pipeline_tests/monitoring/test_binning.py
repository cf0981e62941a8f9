"""Drift from value counts: the bins, histograms and scores of counts summed a chunk at a time are
exactly numpy's and Evidently's on the whole column, so streamed data drifts as it would whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.monitoring.binning import column_counts, merge, sturges_edges
from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN, compute_drift, compute_drift_chunks
from mlops_pipeline.spec_sections import DriftSpec


def _columns(rng):
    yield rng.normal(0, 1, 1000)
    yield rng.integers(-50, 50, 777).astype("float64")  # values on the bin edges
    yield np.round(rng.exponential(3, 5000), 1)
    yield np.full(40, 2.5)  # one value: numpy widens the range by 0.5 each side
    yield np.array([0.1, 0.1 + 1e-12])
    yield rng.uniform(-1e9, 1e9, 3)


def test_sturges_edges_are_numpys_from_size_and_range_alone():
    for values in _columns(np.random.default_rng(0)):
        ours = sturges_edges(values.min(), values.max(), len(values))
        np.testing.assert_array_equal(ours, np.histogram_bin_edges(values, bins="sturges"))


def test_counts_of_chunks_merge_into_the_counts_of_the_whole():
    rng = np.random.default_rng(2)
    numbers = pd.Series(np.where(rng.random(3000) < 0.1, np.nan, rng.integers(0, 200, 3000)))
    numbers[:5] = np.inf
    words = pd.Series(rng.choice(["a", "b", None, "c"], 3000)).astype("category")
    for series, numerical, raw in ((numbers, True, False), (words, False, False), (numbers, True, True)):
        whole = column_counts(series, numerical, raw)
        merged = merge([column_counts(series[lo:lo + 701], numerical, raw) for lo in range(0, 3000, 701)])
        if raw:  # a numerical column binned by range keeps its finite values, in order
            np.testing.assert_array_equal(merged.raw, whole.raw)
            whole, merged = whole.as_counts(), merged.as_counts()
        np.testing.assert_array_equal(merged.values, whole.values)
        np.testing.assert_array_equal(merged.counts, whole.counts)
        assert whole.rows == series.replace(np.inf, np.nan).notna().sum()


def _frame(rng, n, shift=0.0):
    return pd.DataFrame({
        "x": rng.normal(shift, 1, n),
        "few": rng.integers(0, 12, n).astype("float64"),
        "gappy": np.where(rng.random(n) < 0.1, np.nan, rng.exponential(1 + shift, n)),
        "c": pd.Categorical(rng.choice(["u", "v", "w"], n, p=(0.5, 0.3, 0.2) if shift else (0.3, 0.3, 0.4))),
        PREDICTION_COLUMN: rng.choice(["late", "on_time", "early"], n),  # a multi-class prediction
    })


@pytest.mark.parametrize("settings", [DriftSpec(), DriftSpec(sample_rows=900),
                                      DriftSpec(num_method="jensenshannon", cat_method="psi"),
                                      DriftSpec(num_method="wasserstein")])
def test_drift_of_chunks_is_drift_of_the_whole(settings):
    rng = np.random.default_rng(3)
    ref, cur = _frame(rng, 4000), _frame(rng, 3500, shift=0.3)
    args = (["c"], ["x", "few", "gappy", PREDICTION_COLUMN], settings, 7, 400)
    whole = compute_drift(ref, cur, *args)
    chunks = compute_drift_chunks(ref, (cur[i:i + 600] for i in range(0, len(cur), 600)), *args)
    assert [(c.column, c.method, c.score, c.drifted) for c in chunks.columns] == \
        [(c.column, c.method, c.score, c.drifted) for c in whole.columns]
    assert (chunks.reference_rows, chunks.current_rows) == (whole.reference_rows, whole.current_rows)
    exact = settings.num_method != "wasserstein"  # Evidently scores it: its report holds every row
    assert chunks.report_rows == whole.report_rows == ((400, 400) if exact else (4000, 3500))
    assert {c.column: c.drifted for c in whole.columns}["c"]  # the shifted categories drift
    assert whole.prediction.method == settings.cat_method  # classes are compared as categories


def test_the_report_sample_holds_the_same_rows_fed_whole_or_in_chunks():
    from mlops_pipeline.monitoring.drift import DriftSide

    frame = _frame(np.random.default_rng(5), 5000)
    whole, chunked = (DriftSide(["c"], ["x", "few"], {"x"}, None, 300, 11, True) for _ in "wc")
    whole.add(frame)
    for i in range(0, len(frame), 450):
        chunked.add(frame[i:i + 450].reset_index(drop=True))
    sample = whole.report_frame()
    assert len(sample) == 300 and sample["x"].is_unique
    pd.testing.assert_frame_equal(chunked.report_frame(), sample)
    assert set(sample["x"]) <= set(frame["x"])  # rows of the data, not copies of one row


def test_a_stream_without_a_row_is_a_clear_error():
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match=r"rows on both sides \(reference 100, current 0\)"):
        compute_drift_chunks(_frame(rng, 100), iter(()), ["c"], ["x"], DriftSpec())
