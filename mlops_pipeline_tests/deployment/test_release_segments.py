"""The release guard per segment: a challenger as good as the champion on average but worse for
one origin is removed, the origin named in the reason (`release_quality.segment_quality`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.deployment import release
from mlops_pipeline.monitoring.predictions import PredictionBatch, PredictionStore
from mlops_pipeline.spec import load_spec
from mlops_pipeline_tests.segment_data import FLIGHTS, scored_flights_holdout

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def requests(flights: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """800 real flights (400 from EWR) with a champion's answer each."""
    hold, answers = scored_flights_holdout(flights)
    rng = np.random.default_rng(0)
    ewr = np.flatnonzero(hold["origin"].to_numpy() == "EWR")
    rest = np.flatnonzero(hold["origin"].to_numpy() != "EWR")
    rows = np.sort(np.r_[rng.choice(ewr, 400, replace=False), rng.choice(rest, 400, replace=False)])
    return hold.iloc[rows].reset_index(drop=True), answers.scores[rows]


def _window(tmp_path, frame: pd.DataFrame, champion: np.ndarray, challenger: np.ndarray,
            role: str) -> pd.DataFrame:
    """One window as the server captures it: the champion answers every request, the challenger
    (v2) as shadow on the same requests or as canary on its own copies; every record labelled."""
    store = PredictionStore(f"sqlite:///{tmp_path / 'p.db'}")
    columns = ["carrier", "origin", "distance"]
    records = [{k: (float(v) if k == "distance" else v) for k, v in r.items()}
               for r in frame[columns].to_dict("records")]
    common = {"ts": T0, "model_name": "flights_delay", "classes": (0, 1), "positive": 1}
    champ = PredictionBatch.from_records(records, (champion >= 0.5).astype(int), champion,
                                         role="champion", model_version="1", latency_ms=3.0, **common)
    other = PredictionBatch.from_records(records, (challenger >= 0.5).astype(int), challenger,
                                         role=role, model_version="2", latency_ms=3.0,
                                         batch_id=champ.batch_id if role == "shadow" else None,
                                         **common)
    store.write([champ, other])
    delays = frame["arr_delay"].to_numpy()
    ids = champ.request_ids + ([] if role == "shadow" else other.request_ids)
    with store.transaction() as conn:
        for rid, delay in zip(ids, np.r_[delays, delays] if role != "shadow" else delays, strict=True):
            store.set_label(rid, float(delay), conn=conn)
    rows = release.read_traffic(store, "flights_delay", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    store.close()
    return rows


@pytest.fixture(scope="module")
def window(tmp_path_factory, requests) -> pd.DataFrame:
    """The captured window: the challenger, shadowing the champion, lost what it knew of EWR."""
    frame, champion = requests
    ewr = (frame["origin"] == "EWR").to_numpy()
    worse = champion.copy()
    worse[ewr] = np.random.default_rng(1).permutation(worse[ewr])
    return _window(tmp_path_factory.mktemp("window"), frame, champion, worse, "shadow")


def _spec():
    spec = load_spec(FLIGHTS)
    return spec.model_copy(update={"segments": spec.segments.model_copy(update={"tolerance": 0.03})})


def _as_canary(rows: pd.DataFrame) -> pd.DataFrame:
    """The same answers served as canary: its own requests, so nothing pairs."""
    canary = rows["role"] == "shadow"
    return rows.assign(role=rows["role"].where(~canary, "canary"),
                       request_id=rows["request_id"].where(~canary, rows["request_id"] + "-c"))


@pytest.mark.parametrize("role", ["shadow", "canary"])
def test_a_challenger_worse_for_one_origin_is_removed_naming_it(window, role):
    spec = _spec()
    rows = window if role == "shadow" else _as_canary(window)

    analysis = release.analyse(rows, spec, "1", "2", None, T0, T0)

    verdict = analysis.verdict("segments")
    assert verdict.status == release.FAIL, verdict
    assert "segment origin=EWR (" in verdict.detail
    assert not {"origin=JFK", "origin=LGA"} & {r.segment for r in analysis.segments.blocking}
    decision = release.decide(analysis, spec.release)
    assert decision.action == release.REMOVE and "origin=EWR" in decision.reason


def test_a_challenger_as_good_in_every_segment_is_not_removed(window):
    champion = window[window["role"] == "champion"].set_index("request_id")
    shadow = window["role"] == "shadow"
    same = window.copy()
    for column in ("probability", "probabilities", "prediction"):
        same.loc[shadow, column] = champion.loc[window.loc[shadow, "request_id"], column].to_numpy()
    analysis = release.analyse(same, _spec(), "1", "2", None, T0, T0)
    assert analysis.verdict("segments").status == release.PASS
    assert not analysis.segments.blocking
