"""Release analysis on small captured windows: the statistics per role, shadow agreement against a
direct computation from the store, each check's verdict (pass, fail, not enough evidence) and the
one decision it leads to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from mlops_pipeline.deployment import release, traffic_stats
from mlops_pipeline.deployment.tags import ROLES
from mlops_pipeline.monitoring.predictions import PredictionBatch, PredictionStore
from mlops_pipeline.spec import load_spec

T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _spec(**release_overrides):
    spec = load_spec()
    data = spec.model_dump()
    for key, value in release_overrides.items():
        data["release"][key] = {**data["release"].get(key, {}), **value} if isinstance(value, dict) else value
    return type(spec).model_validate(data)


def _store(tmp_path, n: int = 400, canary: int = 0, shadow_shift: float = 0.0, canary_ms: float = 5.0,
           labelled: int = 0, seed: int = 0) -> PredictionStore:
    """n single-record champion requests (v1) with a shadow answer each (v2, its probability moved
    by `shadow_shift`), plus `canary` canary requests (v2); the first `labelled` records labelled
    with an arr_delay drawn from the champion's probability."""
    rng = np.random.default_rng(seed)
    store = PredictionStore(f"sqlite:///{tmp_path / 'p.db'}")
    batches = []
    labels = []
    for i in range(n):
        p = float(rng.uniform(0.02, 0.9))
        ts = T0 + timedelta(seconds=i)
        champ = PredictionBatch.from_records([{"x": i}], [int(p >= 0.5)], [p], role="champion", ts=ts,
                                             model_name="flights_delay", model_version="1",
                                             latency_ms=float(rng.uniform(2, 4)), classes=(0, 1), positive=1)
        q = float(np.clip(p + shadow_shift + rng.normal(0, 0.01), 0, 1))
        shadow = PredictionBatch.from_records([{"x": i}], [int(q >= 0.5)], [q], role="shadow", ts=ts,
                                              model_name="flights_delay", model_version="2",
                                              latency_ms=8.0, batch_id=champ.batch_id, classes=(0, 1),
                                              positive=1)
        batches += [champ, shadow]
        if i < labelled:
            labels.append((champ.request_ids[0], 60.0 if rng.uniform() < p else 0.0))
    for i in range(canary):
        p = float(rng.uniform(0.02, 0.9))
        batches.append(PredictionBatch.from_records(
            [{"x": -i}], [int(p >= 0.5)], [p], role="canary", ts=T0 + timedelta(seconds=i),
            model_name="flights_delay", model_version="2", latency_ms=canary_ms + float(rng.uniform(0, 1)),
            classes=(0, 1), positive=1))
    store.write(batches)
    for rid, label in labels:
        store.set_label(rid, label)
    return store


def _analyse(store, spec, metrics=None, challenger="2"):
    start, end = T0 - timedelta(hours=1), T0 + timedelta(hours=1)
    rows = release.read_traffic(store, spec.name, start, end)
    return release.analyse(rows, spec, "1", challenger, metrics, start, end)


def _metrics(canary_ok=200, model_errors=0, shadow_calls=400, shadow_errors=0) -> str:
    return (
        "# TYPE mlops_predict_requests counter\n"
        f'mlops_predict_requests_total{{model_version="1",role="champion"}} 400.0\n'
        f'mlops_predict_requests_total{{model_version="2",role="canary"}} {canary_ok}.0\n'
        "# TYPE mlops_errors counter\n"
        f'mlops_errors_total{{kind="model"}} {model_errors}.0\n'
        f'mlops_errors_total{{kind="shadow"}} {shadow_errors}.0\n'
        "# TYPE mlops_batch_rows histogram\n"
        f'mlops_batch_rows_count{{role="shadow"}} {shadow_calls}.0\n'
        f'mlops_batch_rows_sum{{role="shadow"}} {shadow_calls}.0\n'
    )


def test_shadow_agreement_and_score_difference_match_a_direct_computation_from_the_store(tmp_path):
    store = _store(tmp_path, n=300, shadow_shift=0.03)
    rows = store.read_window(probabilities=True)
    champ = rows[rows["role"] == "champion"].set_index("request_id")
    shadow = rows[rows["role"] == "shadow"].set_index("request_id")
    common = champ.index.intersection(shadow.index)
    expected_agree = float((champ.loc[common, "prediction"] == shadow.loc[common, "prediction"]).mean())
    expected_diff = float((champ.loc[common, "probability"] - shadow.loc[common, "probability"]).abs().mean())
    got = traffic_stats.agreement(rows)
    assert got.records == len(common) == 300
    assert got.agreement == pytest.approx(expected_agree)
    assert got.mean_abs_diff == pytest.approx(expected_diff)
    assert 0.02 < got.mean_abs_diff < 0.04 and got.agreement < 1.0


def test_role_stats_count_requests_latency_per_request_and_the_class_distribution(tmp_path):
    store = _store(tmp_path, n=100, canary=40, canary_ms=30.0)
    analysis = _analyse(store, _spec(), _metrics(canary_ok=40, model_errors=2))
    champ, canary, shadow = (analysis.roles[r] for r in ROLES)
    assert (champ.requests, canary.requests, shadow.requests) == (100, 40, 100)
    assert 2 <= champ.latency_p50_ms <= champ.latency_p99_ms <= 4
    assert 30 <= canary.latency_p99_ms <= 31
    assert canary.errors == 2 and champ.errors == 0  # a 500 while a canary is live counts against it
    assert sum(v for k, v in champ.distribution.items() if k.startswith("share")) == pytest.approx(1.0)
    assert "| canary | 2 | 40 | 40 | 2 |" in analysis.roles_table()


def test_slow_canary_fails_latency_and_the_decision_is_to_remove_it(tmp_path):
    spec = _spec(latency={"min_requests": 30})
    analysis = _analyse(_store(tmp_path, n=100, canary=40, canary_ms=60.0), spec, _metrics(canary_ok=40))
    latency = analysis.verdict("latency")
    assert latency.status == release.FAIL and latency.value > 60
    decision = release.decide(analysis, spec.release)
    assert decision.action == release.REMOVE and "latency" in decision.reason
    assert release.decide(analysis, spec.release, training_busy=True).action == release.WAIT


def test_too_few_requests_is_not_enough_evidence_not_a_verdict(tmp_path):
    spec = _spec()  # latency needs 100 requests per side
    analysis = _analyse(_store(tmp_path, n=100, canary=40, canary_ms=60.0), spec, _metrics(canary_ok=40))
    assert analysis.verdict("latency").status == release.INSUFFICIENT
    assert analysis.verdict("errors").status == release.INSUFFICIENT  # 40 of 100 calls
    assert release.decide(analysis, spec.release).action == release.WAIT


def test_errors_unknown_without_metrics_and_fail_above_the_rate(tmp_path):
    spec = _spec(errors={"min_requests": 30})
    store = _store(tmp_path, n=100, canary=40)
    unknown = _analyse(store, spec, None).verdict("errors")
    assert unknown.status == release.INSUFFICIENT and "unknown" in unknown.detail
    failing = _analyse(store, spec, _metrics(canary_ok=40, model_errors=5)).verdict("errors")
    assert failing.status == release.FAIL and failing.value == pytest.approx(5 / 45)
    (tmp_path / "s").mkdir()
    shadow_only = _analyse(_store(tmp_path / "s", n=100), spec,
                           _metrics(canary_ok=0, shadow_calls=100, shadow_errors=0))
    assert shadow_only.verdict("errors").status == release.PASS
    assert shadow_only.verdict("latency").status == release.NA  # no canary: nothing clients waited on


def test_shifted_shadow_fails_shift_and_agreement(tmp_path):
    spec = _spec(shift={"min_records": 100}, agreement={"min_records": 100})
    good = _analyse(_store(tmp_path, n=300), spec)
    assert good.verdict("shift").status == release.PASS
    assert good.verdict("agreement").status == release.PASS
    (tmp_path / "b").mkdir()
    bad_store = _store(tmp_path / "b", n=300, shadow_shift=0.3)
    bad = _analyse(bad_store, spec)
    assert bad.verdict("shift").status == release.FAIL and bad.verdict("shift").value > 0.2
    assert bad.verdict("agreement").status == release.FAIL
    # the drift module's own PSI on the same two score columns
    from mlops_pipeline.monitoring.drift import column_score

    rows = bad_store.read_window(probabilities=True)
    expected = column_score(rows[rows.role == "champion"]["probability"].rename("prediction"),
                            rows[rows.role == "shadow"]["probability"].rename("prediction"), True, "psi")
    assert bad.verdict("shift").value == pytest.approx(expected)


def test_quality_on_labelled_shadow_pairs_passes_within_tolerance_and_good_challenger_is_ready(tmp_path):
    spec = _spec(latency={"min_requests": 30}, errors={"min_requests": 30}, shift={"min_records": 100},
                 agreement={"min_records": 100}, quality={"min_labelled": 200, "bootstrap_samples": 100})
    analysis = _analyse(_store(tmp_path, n=400, canary=40, labelled=400), spec,
                        _metrics(canary_ok=40, shadow_calls=400))
    q = analysis.verdict("quality")
    assert analysis.quality.paired and analysis.quality.records == 400
    assert q.status == release.PASS, q
    assert analysis.ready, analysis.table()
    assert release.decide(analysis, spec.release).action == release.ANNOUNCE
    assert release.decide(analysis, spec.release, announced=True).action == release.WAIT
    auto = _spec(auto_promote=True, latency={"min_requests": 30}, errors={"min_requests": 30},
                 shift={"min_records": 100}, agreement={"min_records": 100},
                 quality={"min_labelled": 200, "bootstrap_samples": 100})
    assert release.decide(analysis, auto.release).action == release.PROMOTE
    assert "| quality | pass |" in analysis.table()


def test_quality_without_labels_waits_unless_not_required(tmp_path):
    spec = _spec(shift={"min_records": 100}, agreement={"min_records": 100})
    store = _store(tmp_path, n=300)
    metrics = _metrics(canary_ok=0, shadow_calls=300)
    assert _analyse(store, spec, metrics).verdict("quality").status == release.INSUFFICIENT
    relaxed = _spec(shift={"min_records": 100}, agreement={"min_records": 100}, quality={"required": False})
    analysis = _analyse(store, relaxed, metrics)
    assert analysis.verdict("quality").status == release.NA
    assert analysis.ready and release.decide(analysis, relaxed.release).action == release.ANNOUNCE


def test_rows_of_other_versions_do_not_judge_this_challenger(tmp_path):
    store = _store(tmp_path, n=50)
    analysis = _analyse(store, _spec(), None, challenger="7")
    assert analysis.roles["shadow"].records == 0 and analysis.roles["champion"].records == 50
    assert isinstance(analysis.roles["champion"].distribution, dict)
    assert release.decide(release.ReleaseAnalysis("m", "1", None, T0, T0), _spec().release).action == "wait"


def test_the_board_shows_the_release_verdicts(tmp_path):
    from mlops_pipeline.monitoring.board import Board, render_board

    spec = _spec(latency={"min_requests": 30})
    analysis = _analyse(_store(tmp_path, n=100, canary=40, canary_ms=60.0), spec, _metrics(canary_ok=40))
    board = Board(title="t", system={}, data=[], drift={}, model={},
                  release=[v.as_dict() for v in analysis.verdicts])
    page = render_board(board)
    assert "Release (challenger on live traffic)" in page
    assert "<td class='bad'>fail</td>" in page and "canary p99" in page
    assert "Release (" not in render_board(Board(title="t", system={}, data=[], drift={}, model={}))
