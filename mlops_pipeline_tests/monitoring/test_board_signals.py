"""From what the board gathers to THE verdict and the first screen (`monitoring.board_signals`):
a segment named before labels, by its estimate alone, shows in the verdict and the segments panel
marked as estimated; per-segment drift past the spec's limit and labelled regressions likewise."""

from __future__ import annotations

import re

import pandas as pd

from mlops_pipeline.monitoring.board_signals import Gathered, segment_signals, view
from mlops_pipeline.monitoring.board_view import panels
from mlops_pipeline.spec import load_spec


def _gathered(**kw) -> Gathered:
    base = dict(spec=load_spec(), log=pd.DataFrame(), system={"served": 900}, versions=[],
                checks=[], quality=pd.DataFrame(), release=[], champion="v2", segment_metric="roc_auc",
                estimated_metric="roc_auc")
    return Gathered(**{**base, **kw})


def _estimate(segment: str, value: float, rows: int, verdict: str) -> dict:
    return {"segment": segment, "rows": rows, "candidate": value, "champion": None,
            "verdict": verdict}


def test_a_segment_only_the_estimate_names_shows_as_estimated_before_labels() -> None:
    estimated = [_estimate("origin=EWR", 0.581, 412, "regressed"),
                 _estimate("origin=JFK", 0.702, 388, "ok")]
    screen = view(_gathered(estimated_segments=estimated))
    assert screen.verdict.level == "WATCH" and screen.verdict.rule == "segment"
    assert screen.verdict.words == ("segment origin=EWR is getting worse — estimated: ranking "
                                    "quality (ROC AUC) 0.581, its whole band below the gate's floor "
                                    "(412 rows)")
    assert [(s.segment, s.source) for s in screen.named_segments] == [("origin=EWR", "estimated")]
    # no labelled comparison yet: the bars are the estimates, said so
    assert screen.segments[0] == ("origin=EWR", "roc_auc", 0.581, 412, "estimated")
    panel = next(p for p in panels(screen) if "Worst segments" in p)
    assert "data-source='estimated'" in panel
    assert "by segment (estimated)" in re.sub(r"<[^>]+>", " ", panel)


def test_per_segment_drift_past_the_limit_and_labelled_regressions_are_named_with_their_source() -> None:
    g = _gathered(
        segment_drift=[{"segment": "distance=[500, 1000)", "rows": 412, "drift_share": 1.0},
                       {"segment": "origin=JFK", "rows": 388, "drift_share": 0.1},
                       {"segment": "origin=LGA", "rows": 90, "drift_share": None}],
        labelled_segments=[_estimate("carrier=UA", 0.6, 150, "regressed"),
                           _estimate("carrier=AA", 0.7, 150, "ok")])
    named = [(s.segment, s.source) for s in segment_signals(g)]
    # a band is named in words, as on the rest of the page (no brackets)
    assert named == [("carrier=UA", "realized"), ("distance=500 to 1000", "drift")]
    assert view(g).verdict.words.startswith("segment carrier=UA is getting worse — realized: ")
