"""The 3 a.m. verdict: each rule on a small set of signals, and which one wins when several fire."""

from __future__ import annotations

from datetime import UTC, datetime

from mlops_pipeline.monitoring.verdict import ACT, OK, WATCH, SegmentSignal, Signals, decide


def _signals(**kw) -> Signals:
    base = dict(model="flights_delay", champion_version="v3", served=1200,
                versions=[{"version": "v3", "role": "champion", "predictions": 1200, "p99_ms": 12.0}])
    return Signals(**{**base, **kw})


def _batch_check(**kw) -> dict:
    return {"asset": "dataset_snapshot", "check": "batch_out_of_range", "status": "failed",
            "severity": "ERROR", "detail": "1 problem(s)", "batch": "feedback_2013-04-02.parquet",
            "column": "temp", **kw}


def test_healthy_signals_are_ok_in_words_with_units() -> None:
    v = decide(_signals())
    assert v.level == OK and not v.command and not v.findings
    assert v.words == ("all is well: flights_delay champion v3 — 1,200 predictions served, "
                       "p99 12 ms (target 50 ms)")


def test_a_canary_slower_than_the_slo_is_rolled_back() -> None:
    rows = [{"version": "v3", "role": "champion", "predictions": 900, "p99_ms": 11.0},
            {"version": "v4", "role": "canary", "predictions": 100, "p99_ms": 155.0}]
    v = decide(_signals(versions=rows))
    assert v.level == ACT and v.rule == "latency"
    assert v.words == "roll back v4: canary p99 155 ms is 3.1x the 50 ms target"
    assert v.command.startswith("mlops-pipeline rollback --reason")


def test_a_slow_canary_with_too_few_requests_is_not_judged() -> None:
    rows = [{"version": "v4", "role": "canary", "predictions": 5, "p99_ms": 900.0}]
    assert decide(_signals(versions=rows)).level == OK


def test_server_errors_above_the_budget_roll_back() -> None:
    v = decide(_signals(error_rate=0.05))
    assert (v.level, v.rule, v.command) == (ACT, "errors", "mlops-pipeline rollback")
    assert "5.0% of calls fail" in v.words
    assert decide(_signals(error_rate=0.005)).level == OK


def test_a_blocked_batch_names_file_column_and_the_quarantine_command() -> None:
    v = decide(_signals(checks=[_batch_check()]))
    assert v.level == ACT and v.rule == "batch"
    assert v.words == "retraining blocked by batch feedback_2013-04-02.parquet, column 'temp' (out of range)"
    assert v.command == ('mlops-pipeline batches quarantine feedback_2013-04-02.parquet '
                         '--reason "out of range"')


def test_another_failed_blocking_check_is_named_with_its_description() -> None:
    check = {"asset": "trained_model", "check": "eval_gate", "status": "failed", "severity": "ERROR",
             "detail": "roc_auc 0.61 below the champion's 0.70"}
    v = decide(_signals(checks=[check, {**check, "check": "other"}]))
    assert (v.level, v.rule) == (ACT, "check")
    assert v.words == "eval gate failed (and 1 more): roc_auc 0.61 below the champion's 0.70"


def test_drift_with_estimated_degradation_and_no_retraining_says_retrain() -> None:
    drifted = dict(drifted_columns=list("abcdefghi"), columns_compared=16, estimate_metric="roc_auc",
                   estimate=0.58, estimate_floor=0.62, drift_at=datetime(2013, 4, 2, 5, tzinfo=UTC))
    v = decide(_signals(**drifted))
    assert (v.level, v.rule, v.command) == (ACT, "drift", "mlops-pipeline materialize")
    assert v.words == ("inputs drifted in 9 of 16 columns; estimated ranking quality (ROC AUC) 0.580 "
                       "is below its floor 0.620 and no retraining ran since: retrain")
    # above the floor: watch only
    assert decide(_signals(**{**drifted, "estimate": 0.7})).level == WATCH


def test_drift_after_a_promoted_retraining_is_watch_in_words() -> None:
    v = decide(_signals(drifted_columns=list("abcdefghi"), columns_compared=16, estimate=0.5,
                        estimate_floor=0.6, drift_at=datetime(2013, 4, 2, 5, tzinfo=UTC),
                        retrained_at=datetime(2013, 4, 2, 6, tzinfo=UTC), retrain_promoted=True))
    assert (v.level, v.command) == (WATCH, "")
    assert v.words == "inputs drifted in 9 of 16 columns; retraining ran at 06:00 UTC and was promoted"


def test_drift_below_the_share_limit_does_not_fire() -> None:
    assert decide(_signals(drifted_columns=["a"], columns_compared=16)).level == OK


def test_answers_waiting_for_labels_point_at_the_labeling_file() -> None:
    v = decide(_signals(labels_waiting=420, labeling_file="labeling/2013-04-02.csv"))
    assert (v.level, v.rule) == (WATCH, "labels")
    assert v.words == "420 answers wait for labels"
    assert "labeling/2013-04-02.csv" in v.command
    assert decide(_signals(labels_waiting=10, labeling_file="labeling/x.csv")).level == OK


def test_a_failed_warning_check_is_watch() -> None:
    check = {"asset": "production_drift", "check": "prediction_drift", "status": "failed", "severity": "WARN"}
    v = decide(_signals(checks=[check]))
    assert (v.level, v.words) == (WATCH, "warning: prediction drift")
    assert decide(_signals(checks=[{**check, "first_run": True}])).level == OK  # informs only


def test_no_champion_yet_says_run_the_loop() -> None:
    v = decide(_signals(champion_version="", versions=[], served=0))
    assert (v.level, v.rule, v.command) == (WATCH, "no_champion", "mlops-pipeline materialize")
    assert v.words == "no champion for flights_delay yet: run the loop"


def test_act_beats_watch_and_every_finding_stays_listed() -> None:
    rows = [{"version": "v4", "role": "canary", "predictions": 100, "p99_ms": 155.0}]
    v = decide(_signals(versions=rows, checks=[_batch_check()], labels_waiting=420,
                        labeling_file="labeling/2013-04-02.csv"))
    assert v.rule == "latency"  # the most urgent ACT first
    assert [f.rule for f in v.findings] == ["latency", "batch", "labels"]
    assert v.line().startswith("ACT — roll back v4") and "→ mlops-pipeline rollback" in v.line()


def test_a_segment_named_by_its_estimate_before_labels_is_watch_saying_estimated() -> None:
    ewr = [SegmentSignal("origin=EWR", "drift", "100% of its input columns drifted (412 rows)"),
           SegmentSignal("origin=EWR", "estimated", "ranking quality (ROC AUC) 0.581 (412 rows)"),
           SegmentSignal("origin=JFK", "drift", "40% of its input columns drifted (300 rows)")]
    v = decide(_signals(segments=ewr, labels_waiting=10, labeling_file="labeling/2013-04-02.csv"))
    assert v.level == WATCH and v.rule == "segment"
    assert v.words == ("segment origin=EWR is getting worse — estimated: ranking quality (ROC AUC) "
                       "0.581 (412 rows); drift: 100% of its input columns drifted (412 rows) "
                       "(and 1 more segment)")
    assert v.command.startswith("fill labeling/2013-04-02.csv")  # labels will tell
    realized = SegmentSignal("carrier=UA", "realized", "ranking quality (ROC AUC) 0.600")
    v = decide(_signals(segments=[*ewr, realized], labeling_file="labeling/2013-04-02.csv"))
    assert v.words.startswith("segment carrier=UA is getting worse — realized: ") and not v.command
    assert decide(_signals(segments=ewr, checks=[_batch_check()])).level == ACT
    # a drift line that outranks it still names the segment and its sources
    v = decide(_signals(segments=ewr, drifted_columns=["a", "b"], columns_compared=3,
                        estimate_metric="roc_auc", estimate=0.6, estimate_floor=0.65))
    assert v.level == ACT and v.words.endswith("retrain; worst segment origin=EWR (estimated, drift)")
