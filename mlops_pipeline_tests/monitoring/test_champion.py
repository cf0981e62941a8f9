"""The champion's artefacts as monitoring reads them, against a fake registry and store: read from
where training stored them, refused with a reason when there is nothing to read. No Dagster."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.monitoring.champion import (
    ChampionUnavailable,
    champion_estimator,
    champion_reference,
    champion_rows,
)
from mlops_pipeline.monitoring.estimation_fit import fit_classification_estimator
from mlops_pipeline.training.model import ClassInfo

SPEC = SimpleNamespace(name="flights", task="classification")


class FakeRegistry:
    def __init__(self, champion=None):
        self.champion = champion

    def version_by_alias(self, name, alias):
        assert (name, alias) == ("flights", "champion")
        return self.champion

    def configure(self):
        raise AssertionError("nothing here should load a model")


class FakeStorage:
    def __init__(self, files: dict):
        self.files = files

    def exists(self, uri):
        return uri in self.files

    def read_table(self, uri):
        return self.files[uri]

    def read_bytes(self, uri):
        return self.files[uri]


def _champion(**tags):
    return SimpleNamespace(version=3, tags=tags)


def test_no_champion_means_nothing_to_compare_and_nothing_to_estimate():
    with pytest.raises(ChampionUnavailable, match="flights has no champion yet: nothing to compare"):
        champion_reference(SPEC, FakeStorage({}), FakeRegistry())
    with pytest.raises(ChampionUnavailable, match="flights has no champion yet: nothing to estimate"):
        champion_estimator(SPEC, FakeStorage({}), FakeRegistry())


def test_a_champion_without_its_snapshot_has_no_reference():
    with pytest.raises(ChampionUnavailable, match="champion v3 has no snapshot_id tag"):
        champion_reference(SPEC, FakeStorage({}), FakeRegistry(_champion()))


def test_the_stored_reference_is_read_without_loading_the_model():
    frame = pd.DataFrame({"distance": [1.0, 2.0], "prediction": [0.1, 0.9]})
    registry = FakeRegistry(_champion(snapshot_id="abc", drift_reference="ref.parquet"))
    ref = champion_reference(SPEC, FakeStorage({"ref.parquet": frame}), registry)
    assert (ref.version, ref.snapshot_id, ref.source, ref.model) == ("3", "abc", "ref.parquet", None)
    assert ref.frame is frame


def test_the_stored_estimator_is_read_with_the_champions_finite_holdout_metrics():
    rng = np.random.default_rng(0)
    s = rng.random(200)
    est = fit_classification_estimator(s, (rng.random(200) < s).astype(int), ClassInfo((0, 1), 1))
    registry = FakeRegistry(_champion(performance_estimator="est.bin", holdout_roc_auc="0.81",
                                      holdout_brier="nan", snapshot_id="abc"))
    champ = champion_estimator(SPEC, FakeStorage({"est.bin": est.to_bytes()}), registry)
    assert champ.version == "3" and champ.source == "est.bin" and champ.model is None
    assert champ.holdout == {"roc_auc": 0.81}
    assert champ.estimator.kind == "binary"


def test_champion_rows_are_the_champion_versions_served_answers_only():
    log = pd.DataFrame({"role": ["champion", "champion", "canary", "shadow"],
                        "model_version": [3, 2, 3, 3], "prediction": [1, 0, 1, 0]})
    rows = champion_rows(log, "3")
    assert list(rows.index) == [0]
    assert champion_rows(pd.DataFrame(), "3").empty
