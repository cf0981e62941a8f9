"""The estimate met by labels, on small frames: which realized metrics fall outside their band,
and when a drop is concept drift. No Dagster."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.monitoring.champion import ChampionEstimator
from mlops_pipeline.monitoring.estimates import (
    MIN_LABELLED,
    compare_realized,
    concept_verdict,
    estimate_table,
    expected_confusion_table,
    too_few_labels,
)
from mlops_pipeline.monitoring.estimation import Estimate
from mlops_pipeline.monitoring.estimation_fit import fit_classification_estimator
from mlops_pipeline.spec_sections import MetricGate
from mlops_pipeline.training.model import ClassInfo

GATE = {"roc_auc": MetricGate(floor=0.6, tolerance=0.02)}


def _spec() -> SimpleNamespace:
    return SimpleNamespace(task="classification", gate=GATE,
                           target=SimpleNamespace(expression=None, name="y"))


def _champion(seed: int = 0) -> ChampionEstimator:
    rng = np.random.default_rng(seed)
    s = rng.random(2000)
    est = fit_classification_estimator(s, (rng.random(2000) < s).astype(int), ClassInfo((0, 1), 1))
    return ChampionEstimator("3", est, {"roc_auc": 0.75}, "stored")


def _rows(labels_from_scores: bool, n: int = 400, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    y = (rng.random(n) < p) if labels_from_scores else (rng.random(n) < 0.5)
    return pd.DataFrame({"probability": p, "label": y.astype(int)})


def test_concept_drift_is_a_drop_while_the_inputs_did_not_drift():
    assert concept_verdict([], True) == (False, "realized quality holds against the champion's "
                                                "holdout, or the estimate foresaw its drop")
    drifted, why = concept_verdict(["realized roc_auc 0.5 is past 0.73"], False)
    assert not drifted and why.startswith("quality dropped but the inputs drifted too")
    drifted, why = concept_verdict(["realized roc_auc 0.5 is past 0.73"], None)
    assert drifted and "(input drift not measured for this day)" in why


def test_labels_the_estimate_foresaw_are_inside_the_band_and_no_drop():
    compared = compare_realized(_spec(), _champion(), _rows(labels_from_scores=True), seed=0)
    assert compared.outside == [] and compared.drops == []
    assert abs(compared.errors["roc_auc"]) < 0.05


def test_labels_unrelated_to_the_scores_fall_below_the_band_and_past_the_gates_line():
    compared = compare_realized(_spec(), _champion(), _rows(labels_from_scores=False), seed=0)
    assert compared.outside and compared.outside[0].startswith("realized roc_auc")
    assert compared.drops and "is past 0.7300" in compared.drops[0]


def test_too_few_labels_or_a_single_class_cannot_be_judged():
    assert too_few_labels(_spec(), _rows(True, n=MIN_LABELLED - 1))
    assert too_few_labels(_spec(), _rows(True, n=MIN_LABELLED).assign(label=1))
    assert not too_few_labels(_spec(), _rows(True, n=MIN_LABELLED))


def test_the_estimate_table_shows_the_band_the_line_and_the_realized_error():
    estimates = {"roc_auc": Estimate("roc_auc", 0.7, 0.65, 0.75, 100)}
    table = estimate_table(estimates, _spec(), {"roc_auc": 0.75}, {"roc_auc": 0.6})
    assert table.splitlines()[2] == "| roc_auc | 0.7000 | [0.6500, 0.7500] | 0.7300 | 0.6 | 0.7500 | " \
                                    "0.6000 | -0.1000 |"


def test_the_expected_confusion_of_binary_answers_sums_to_the_rows():
    table = expected_confusion_table(_rows(True, n=50), _champion())
    assert set(table) == {"true negative", "true positive"}
    assert sum(sum(row.values()) for row in table.values()) == pytest.approx(50, abs=0.05)
