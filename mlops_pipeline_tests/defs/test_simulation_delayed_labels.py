"""Delayed labels in `mlops-pipeline simulate`: a month's labels arrive only when a later month is
replayed, for a share of the requests, so the estimate is there before the realized metric.

The serving process and champion come from `test_simulation.served_loop` (a real
`mlops-pipeline serve`, the real prediction store, the real sensors).
"""

from __future__ import annotations

import pytest

from mlops_pipeline.cli.simulate import print_table
from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.defs.simulation import MonthReport, run_simulation
from mlops_pipeline.monitoring.predictions import PredictionStore
from mlops_pipeline.spec import load_spec
from mlops_pipeline_tests.defs.test_simulation import served_loop  # noqa: F401  (fixture)


@pytest.mark.slow
def test_labels_arrive_a_month_late_and_the_estimate_leads(served_loop, flights):  # noqa: F811
    spec = load_spec()
    april, may = run_simulation(build_definitions(), flights, spec, served_loop, months=[4, 5], sample=0.02,
                                label_delay=0,
                                label_share=0.5, label_lag_days=1, say=lambda _: None)

    # April: answered and estimated, but no label yet; half its requests' labels are on their way
    assert april.answered == april.sent > 400
    assert april.labelled == 0 and april.labels_pending > 0.4 * april.sent
    assert 0.5 < april.estimated["roc_auc"] < 0.95 and not april.realized
    # May: April's labels arrive (all of them, once), May's wait for the next month
    assert may.labelled == april.labels_pending
    assert may.labels_pending > 0.4 * may.sent
    assert 0.5 < may.estimated["roc_auc"] < 0.95 and 0.5 < may.realized["roc_auc"] < 0.95

    store = PredictionStore()
    served = store.read_window(roles=["champion", "canary"])
    store.close()
    labelled = served[served["label"].notna()]
    assert len(labelled) == may.labelled
    assert (labelled["ts"] < served["ts"].iloc[april.answered]).all()  # only April's requests


def test_the_table_shows_estimated_and_realized_per_month(capsys, data_dir):
    spec = load_spec()
    reports = [
        MonthReport(month=4, sent=500, labelled=0, champion_before="1", champion_after="1",
                    labels_pending=250, estimated={"roc_auc": 0.71}),
        MonthReport(month=5, sent=480, labelled=250, champion_before="1", champion_after="2",
                    labels_pending=240, estimated={"roc_auc": 0.64}, realized={"roc_auc": 0.7},
                    retrain_runs=[{"trigger": "estimated_performance", "gate_passed": True}]),
    ]
    print_table(reports, spec, label_lag_days=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[-3:] == ["est.", "roc_auc", "realized"]
    assert lines[1].split()[:3] == ["4", "500", "0"] and lines[1].split()[-2:] == ["0.710", "—"]
    assert lines[2].split()[-2:] == ["0.640", "0.700"] and "estimated_performance: passed" in lines[2]
    assert "240 labels still to come (--label-lag-days 1)" in lines[3]
