"""The board's first screen on small inputs: the verdict first, at most eight panels, the segments
panel only with segments, quality beside its sample size ("not enough labels" below the minimum),
units on the numbers, and the old tables behind <details>."""

from __future__ import annotations

import re

from mlops_pipeline.monitoring.board import Board, render_board
from mlops_pipeline.monitoring.board_view import MIN_LABELS, View, first_screen, panels
from mlops_pipeline.monitoring.verdict import SegmentSignal, Signals, decide


def _view(**kw) -> View:
    verdict = decide(Signals(model="m", champion_version="v1", served=10))
    base = dict(verdict=verdict, owner="team-a", runbook_url="https://runbooks/m", rps=[1.0, 2.0],
                p99_series=[10.0, 12.0], p99_ms=12.0, error_pct=0.0, served=10,
                quality={"metric": "roc_auc", "estimated": 0.7, "lower": 0.65, "upper": 0.75,
                         "line": 0.66, "realized": 0.71, "labelled": 40, "rows": 300},
                champion="v1", cost=[("v1 champion", 0.00012)])
    return View(**{**base, **kw})


def _text(fragment: str) -> str:
    return re.sub(r"<[^>]+>", " ", fragment)


def test_the_verdict_comes_first_with_owner_and_runbook() -> None:
    html = first_screen(_view())
    assert html.index("id='verdict'") < html.index("id='first'")
    assert "data-level='OK'" in html and "owner: team-a" in html and "href='https://runbooks/m'" in html


def test_segments_panel_only_with_segments_and_never_more_than_eight() -> None:
    assert len(panels(_view())) == 7
    with_segments = panels(_view(segments=[("carrier=UA", "roc_auc", 0.61, 420, "realized")]))
    assert len(with_segments) == 8
    assert "carrier=UA" in with_segments[4] and "420 rows" in with_segments[4]
    assert "ranking quality (ROC AUC) by segment (realized)" in _text(with_segments[4])


def test_a_segment_named_before_labels_shows_with_where_it_came_from() -> None:
    named = [SegmentSignal("origin=EWR", "estimated", "ranking quality (ROC AUC) 0.581 (412 rows), "
                           "its whole band below the gate's floor", 412),
             SegmentSignal("origin=EWR", "drift", "100% of its input columns drifted (412 rows)", 412)]
    shown = panels(_view(named_segments=named))
    assert len(shown) == 8  # named segments alone bring the panel, with no per-segment bars
    text = _text(shown[4])
    assert "origin=EWR" in text and "no per-segment figures yet" in text
    assert "data-source='estimated'" in shown[4] and "data-source='drift'" in shown[4]
    assert "estimated ranking quality (ROC AUC) 0.581" in " ".join(text.split())


def test_quality_shows_its_sample_size_and_not_enough_labels_below_the_minimum() -> None:
    few = _text(panels(_view())[2])
    assert f"not enough labels (40 of {MIN_LABELS} needed)" in few and "realized 0.710" not in few
    assert "from 300 answers" in few
    enough = _text(panels(_view(quality={**_view().quality, "labelled": 250}))[2])
    assert "realized 0.710 from 250 labels" in enough


def test_numbers_carry_units() -> None:
    text = _text(first_screen(_view()))
    assert "p99 12.0 ms against a 50 ms target" in text
    assert "0.00% of calls failed" in text and "$0.00012" in text


def test_the_page_keeps_every_table_behind_details() -> None:
    page = render_board(Board("t", {"requests": 3}, [{"asset": "a", "check": "c", "status": "passed"}],
                              {"production drift share": 0.1}, {"champion": "v1"}, view=_view()))
    assert page.index("id='verdict'") < page.index("<details>")
    assert page.count("<details>") >= 4 and "<details open" not in page
