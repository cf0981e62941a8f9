"""Production quality per segment (`monitoring.segment_quality`): when one origin's answers go
wrong, `segment_quality` names it while the overall figure still meets its floor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.deployment.gate import evaluate_gate
from mlops_pipeline.monitoring.quality import labelled_quality
from mlops_pipeline.monitoring.segment_quality import estimated_segment_quality, segment_quality
from mlops_pipeline.spec import load_spec
from mlops_pipeline_tests.segment_data import FLIGHTS, scored_flights_holdout


@pytest.fixture(scope="module")
def served(flights: pd.DataFrame) -> pd.DataFrame:
    """A day of labelled served answers as the prediction store returns them: the request's
    features, the answer (`probability`, `prediction`, `model_version`) and the label (arr_delay)."""
    hold, answers = scored_flights_holdout(flights)
    return hold.assign(label=hold["arr_delay"], probability=answers.scores,
                       prediction=(answers.scores >= 0.5).astype(int), model_version="1")


def _spec(floor: float = 0.55):
    spec = load_spec(FLIGHTS)
    return spec.model_copy(update={"gate": {"roc_auc": spec.gate["roc_auc"].model_copy(
        update={"floor": floor})}})


def _production_quality_passes(rows: pd.DataFrame, spec) -> bool:
    """`model_quality`'s overall rule: the day's metrics against the gate's floors."""
    floors = {m: r for m, r in spec.gate.items() if r.floor is not None}
    return evaluate_gate(labelled_quality(rows, spec).metrics, None, floors).passed


def test_one_origin_gone_wrong_fails_segment_quality_before_the_overall_figure(served):
    spec = _spec()
    ewr = (served["origin"] == "EWR").to_numpy()
    worse = served.copy()  # EWR's feedback no longer matches its answers (a change there only)
    worse.loc[ewr, "label"] = np.random.default_rng(0).permutation(worse.loc[ewr, "label"].to_numpy())

    assert _production_quality_passes(worse, spec)  # the average still meets the floor
    quality = segment_quality(worse, spec)
    assert not quality.passed
    blocking = {r.segment for r in quality.report.blocking}
    # EWR, and groups that fly mostly from it (United's hub), never the other origins.
    assert "origin=EWR" in blocking and not {"origin=JFK", "origin=LGA"} & blocking
    text = quality.describe()
    assert "segment origin=EWR (" in text and "against the gate floor" in text
    assert f"overall roc_auc {quality.overall:.4f}" in text and quality.overall > 0.55

    # The same day before the change: every segment holds.
    assert segment_quality(served, spec).passed


def test_segment_quality_says_why_it_cannot_judge(served):
    spec = _spec()
    assert "lack segment column" in segment_quality(served.drop(columns=["origin"]), spec).reason
    no_floor = spec.model_copy(update={"gate": {"roc_auc": spec.gate["roc_auc"].model_copy(
        update={"floor": None})}})
    assert "no floor" in segment_quality(served, no_floor).reason


def test_before_labels_the_estimate_of_one_origin_moves_first(served):
    """The champion's answers for EWR turn flat (one probability for every EWR flight, as when
    its inputs moved where it learnt nothing): the per-segment estimate (CBPE) falls below the
    floor while the overall one holds."""
    from mlops_pipeline.monitoring.champion import ChampionEstimator
    from mlops_pipeline.monitoring.estimates import estimate_rows
    from mlops_pipeline.monitoring.estimation_fit import fit_classification_estimator
    from mlops_pipeline.training.model import ClassInfo

    spec = _spec()
    y = served["delayed"].astype(int).to_numpy()
    estimator = fit_classification_estimator(served["probability"].to_numpy(), y, ClassInfo((0, 1), 1))
    champ = ChampionEstimator("1", estimator, {}, "test")
    ewr = (served["origin"] == "EWR").to_numpy()
    unsure = served.copy()
    p = unsure["probability"].to_numpy().copy()
    p[ewr] = p[ewr].mean()
    unsure["probability"] = p

    quality = estimated_segment_quality(unsure, spec, champ)

    assert estimate_rows(spec, champ, unsure, 0)["roc_auc"].lower > 0.55  # overall: fine
    assert not quality.passed
    blocking = {r.segment for r in quality.report.blocking}
    assert "origin=EWR" in blocking and not {"origin=JFK", "origin=LGA"} & blocking
    assert "against the gate floor (estimated)" in quality.describe()
    assert estimated_segment_quality(served, spec, champ).passed
