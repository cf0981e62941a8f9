"""The per-segment comparison (`deployment.segments`): a group of rows that quietly gets worse is
caught — and the noise of a small group, or a drop spread thinly over everyone, is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.deployment.gate import evaluate_gate
from mlops_pipeline.deployment.segment_metrics import Scored, metric_values
from mlops_pipeline.deployment.segments import compare_segments, define_segments, gate_segments
from mlops_pipeline.spec import ConfigError, load_spec
from mlops_pipeline.spec_segments import SegmentsSpec
from mlops_pipeline_tests.segment_data import FLIGHTS, scored_flights_holdout


@pytest.fixture(scope="module")
def holdout(flights: pd.DataFrame) -> tuple[pd.DataFrame, Scored]:
    return scored_flights_holdout(flights)


def _degrade(champion: Scored, rows: np.ndarray, seed: int = 4) -> Scored:
    """The candidate: the champion's answers, shuffled among `rows` (what it learnt of them lost)."""
    s = champion.scores.copy()
    s[rows] = np.random.default_rng(seed).permutation(s[rows])
    return Scored(champion.task, champion.y, s, champion.cut)


def _spec(gate_tolerance: float = 0.03, segment_tolerance: float = 0.05):
    """The flights config; the average may drop 0.03 ROC AUC, a segment 0.05 (with confidence)."""
    spec = load_spec(FLIGHTS)
    gate = {"roc_auc": spec.gate["roc_auc"].model_copy(update={"tolerance": gate_tolerance})}
    segments = spec.segments.model_copy(update={"tolerance": segment_tolerance})
    return spec.model_copy(update={"gate": gate, "segments": segments})


def _shuffled_rows(hold: pd.DataFrame) -> int:
    return int(0.7 * (hold["origin"] == "LGA").sum())


def _overall(candidate: Scored, champion: Scored, gate):
    one = np.ones((1, len(candidate.y)))
    metrics = [{m: float(metric_values(m, s, one)[0]) for m in gate} for s in (candidate, champion)]
    return metrics


def test_one_origin_worse_blocks_at_the_gate_naming_the_origin_and_the_interval(holdout):
    hold, champion = holdout
    spec = _spec()
    lga = np.flatnonzero(hold["origin"].to_numpy() == "LGA")
    rows = np.random.default_rng(3).choice(lga, _shuffled_rows(hold), replace=False)
    candidate = _degrade(champion, rows)  # 70% of LGA's answers: one origin's concept lost
    cand_m, champ_m = _overall(candidate, champion, spec.gate)

    report = gate_segments(hold, candidate, champion, spec)
    result = evaluate_gate(cand_m, champ_m, spec.gate, "1", segments=report)

    assert result.meets_floor and result.no_regression  # the average alone would promote it
    assert not result.passed and not result.segments_pass
    assert [r.segment for r in report.blocking] == ["origin=LGA"]
    failure = result.failures("segments")[0]
    assert failure.startswith("segment origin=LGA (") and "95% interval [" in failure
    row = report.blocking[0]
    assert row.low <= row.difference <= row.high < -0.05
    assert f"[{row.low:+.4f}, {row.high:+.4f}]" in failure
    # The table shows every segment: carriers, origins, distance bands, worst first.
    assert {r.column for r in report.rows} == {"carrier", "origin", "distance"}
    assert report.worst(1)[0].segment == "origin=LGA"
    assert "| origin=LGA |" in report.markdown(limit=3)
    # The model card lists the worst segments under the gate's verdict.
    from mlops_pipeline.deployment.card import CardFacts, model_card

    card = model_card(spec, CardFacts("2", "run", "snap", None, None, None, None, "sha", False), result)
    worst = card[card.index("## Worst segments"):]
    assert "roc_auc, against champion v1" in worst and worst.index("| origin=LGA |") < 400


def test_the_same_drop_spread_thinly_over_all_rows_blocks_no_segment(holdout):
    hold, champion = holdout
    spec = _spec()
    spread = np.random.default_rng(5).choice(len(hold), _shuffled_rows(hold), replace=False)
    candidate = _degrade(champion, spread)
    cand_m, champ_m = _overall(candidate, champion, spec.gate)
    report = gate_segments(hold, candidate, champion, spec)
    assert evaluate_gate(cand_m, champ_m, spec.gate, "1", segments=report).passed
    assert report.passed, report.failures()
    assert all(r.verdict in ("ok", "too few rows") for r in report.rows)


def test_a_small_segment_with_a_big_drop_is_shown_and_does_not_block(holdout):
    hold, champion = holdout
    spec = _spec()
    counts = hold["carrier"].value_counts()
    small = counts[(counts >= 40) & (counts < spec.segments.min_rows)].index[0]
    rows = np.flatnonzero(hold["carrier"].to_numpy() == small)
    candidate = Scored(champion.task, champion.y, champion.scores.copy(), champion.cut)
    candidate.scores[rows] = 1 - candidate.scores[rows]  # its ranking reversed
    report = gate_segments(hold, candidate, champion, spec)
    row = next(r for r in report.rows if r.segment == f"carrier={small}")
    assert row.difference < -0.1 and row.verdict == "too few rows" and not row.blocks
    assert report.passed, report.failures()


def test_the_verdict_is_seeded():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"g": rng.choice(["a", "b"], 2000)})
    y = rng.integers(0, 2, 2000)
    champ = Scored("classification", y, np.clip(y * 0.3 + rng.random(2000) * 0.7, 0, 1))
    cand = Scored("classification", y, rng.random(2000))
    seg = SegmentsSpec(columns=["g"], min_rows=100, resamples=100)
    first = compare_segments(frame, cand, champ, seg, "roc_auc")
    assert first == compare_segments(frame, cand, champ, seg, "roc_auc")
    assert first.blocking  # random answers against informative ones: both segments regress


def test_bootstrap_metrics_equal_sklearn_on_resampled_rows():
    from sklearn import metrics as m

    rng = np.random.default_rng(1)
    n = 500
    idx = rng.integers(0, n, n)
    w = np.bincount(idx, minlength=n)[None, :]
    y, p = rng.integers(0, 2, n), np.round(rng.random(n), 2)  # ties, as real scores have
    s = Scored("classification", y.astype("int8"), p)
    assert metric_values("roc_auc", s, w)[0] == pytest.approx(m.roc_auc_score(y[idx], p[idx]))
    assert metric_values("f1", s, w)[0] == pytest.approx(m.f1_score(y[idx], p[idx] >= 0.5))
    codes, probs = rng.integers(0, 3, n), rng.dirichlet([1, 1, 1], n)
    s3 = Scored("classification", codes, probs)
    assert metric_values("roc_auc", s3, w)[0] == pytest.approx(
        m.roc_auc_score(codes[idx], probs[idx], multi_class="ovr"))
    yr, pr = rng.normal(size=n), rng.normal(size=n)
    sr = Scored("regression", yr, pr)
    assert metric_values("r2", sr, w)[0] == pytest.approx(m.r2_score(yr[idx], pr[idx]))


@pytest.mark.parametrize("dataset", ["fair", "randhie"])
def test_multiclass_and_regression_targets_are_judged_per_segment(dataset):
    """`fair` (affairs rating: multi-class, accuracy) and `randhie` (visits: regression, mae)."""
    import statsmodels.api as sm

    data = getattr(sm.datasets, dataset).load_pandas().data
    rng = np.random.default_rng(2)
    if dataset == "fair":
        column, metric = "religious", "accuracy"
        y = data["rate_marriage"].astype(int).to_numpy() - 1
        probs = np.eye(5)[y] * 0.6 + rng.dirichlet(np.ones(5), len(y)) * 0.4
        champion = Scored("classification", y, probs)
        worse = probs.copy()
        hit = np.flatnonzero(data[column].to_numpy() == 2)
        worse[hit] = rng.dirichlet(np.ones(5), len(hit))
        candidate = Scored("classification", y, worse)
    else:
        column, metric = "idp", "mae"
        y = data["mdvis"].to_numpy(float)
        champion = Scored("regression", y, y + rng.normal(0, 1, len(y)))
        hit = np.flatnonzero(data[column].to_numpy() == 1)
        worse = champion.scores.copy()
        worse[hit] += rng.normal(0, 4, len(hit))
        candidate = Scored("regression", y, worse)
    seg = SegmentsSpec(columns=[column], min_rows=100, resamples=100)
    report = compare_segments(data, candidate, champion, seg, metric)
    assert [r.value for r in report.blocking] == [str(data[column].to_numpy()[hit[0]])]


def test_segments_cut_values_bins_and_crossings():
    frame = pd.DataFrame({"carrier": ["AA", "AA", "UA", None], "distance": [100, 700, 700, np.nan]})
    seg = SegmentsSpec(columns=["carrier"], bins={"distance": [500, 1000]},
                       crossings=[("carrier", "distance")])
    names = {s.name: s.rows.tolist() for s in define_segments(frame, seg)}
    assert names["carrier=AA"] == [0, 1] and names["carrier=(missing)"] == [3]
    assert names["distance=< 500"] == [0] and names["distance=[500, 1000)"] == [1, 2]
    assert names["carrier x distance=AA x [500, 1000)"] == [1]


def test_a_segment_column_the_config_does_not_know_is_a_one_line_error_at_load(tmp_path):
    text = Path(FLIGHTS).read_text().replace("columns: [carrier, origin]", "columns: [carrier, orign]")
    path = tmp_path / "flights.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    message = str(err.value)
    assert "\n" not in message and "'orign'" in message and "origin" in message
    assert "segments" in message
