"""Production per segment before labels (issue 27): one airport's feed goes wrong, the day's
traffic goes through the real server (`mlops-pipeline serve`, the simulation's `replay`), and the
day's production run names that airport while the overall figures hold — the per-segment estimate
moves first (`estimated_segment_quality`, which the estimate sensor retrains on, the segment in
the run's reason) and `production_drift` shows the airport's inputs drifted (THE drift function
per segment). One production run serves every assertion.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlops_pipeline.defs import automation
from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.defs.resources import DatasetResource
from mlops_pipeline.defs.simulation import replay, request_records
from mlops_pipeline.spec import load_spec
from mlops_pipeline_tests.conftest import check_results
from mlops_pipeline_tests.defs.test_simulation import served_loop  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

def _ewr_feed_stuck(rows: pd.DataFrame, spec) -> pd.DataFrame:
    """EWR's upstream feed fails: every EWR request carries the inputs of one earlier EWR flight
    (a cache stuck on one record); the other airports' requests are untouched."""
    rows = rows.copy()
    ewr = (rows["origin"] == "EWR").to_numpy()
    stuck = rows[ewr].iloc[0]
    for column in spec.features.columns:
        rows.loc[ewr, column] = stuck[column]
    return rows


def test_one_airport_gone_wrong_is_named_before_labels_by_its_estimate_and_its_drift(
        trained_flights, served_loop, flights):  # noqa: F811
    spec = load_spec()
    # The months the champion learnt from: only EWR's inputs move, and no label comes.
    day = flights[flights["month"] <= 3].sample(900, random_state=5)
    ids = replay(served_loop, request_records(_ewr_feed_stuck(day, spec), spec))
    assert all(ids)
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("production_monitoring").execute_in_process(
            instance=instance, partition_key=datetime.now(UTC).strftime("%Y-%m-%d"),
            raise_on_error=False)
        checks = check_results(result)

        # Before labels: the overall estimate holds, EWR's falls below the floor.
        assert checks["estimated_quality"].passed, checks["estimated_quality"].description
        by_segment = checks["estimated_segment_quality"]
        assert not by_segment.passed
        assert "segment origin=EWR (" in by_segment.description
        assert "against the gate floor (estimated)" in by_segment.description
        estimated = result.asset_materializations_for_node("estimated_performance")[0].metadata
        table = {r.data["segment"]: r.data for r in estimated["segments"].records}
        assert table["origin=EWR"]["verdict"] == "regressed"
        failing = estimated["failing_segments"].value.split(", ")
        assert "origin=EWR" in failing and not {"origin=JFK", "origin=LGA"} & set(failing)
        assert table["origin=EWR"]["high"] < -spec.segments.tolerance

        # Its inputs drifted, every one of them; the other airports' hardly (THE drift, per
        # segment, worst first), and the worst segment is named in the check.
        drift = result.asset_materializations_for_node("production_drift")[0].metadata
        rows = {r.data["segment"]: r.data for r in drift["segment_drift"].records}
        worst = next(iter(rows.values()))
        assert rows["origin=EWR"]["drift_share"] == worst["drift_share"] == 1.0
        assert {"temp", "hour", "carrier"} <= set(rows["origin=EWR"]["drifted_columns"].split(", "))
        assert rows["origin=JFK"]["drift_share"] < 0.5  # LGA: under min_rows, not judged
        assert drift["worst_segment_drift"].value.startswith(f"segment {worst['segment']} (")
        assert f"worst segment {worst['segment']} (" in checks["production_input_drift"].description

        # The estimate sensor acts on it: a gated retraining whose reason names the airport.
        context = dg.build_sensor_context(instance=instance, resources={"dataset": DatasetResource()},
                                          definitions=defs)
        (request,) = automation.estimated_performance_sensor.evaluate_tick(context).run_requests
        assert request.tags[automation.TRIGGER_TAG] == "estimated_performance"
        assert request.tags["mlops/estimate_check"].endswith(":estimated_segment_quality")
        assert "segment origin=EWR (" in request.tags["mlops/estimate_reason"]

        # On call sees it on the board before any label: THE verdict's line names the airport and
        # where that came from (its own line, or the drift line that outranks it), and the
        # segments panel marks each signal's source.
        board = defs.resolve_job_def("monitoring_board_job").execute_in_process(instance=instance)
        meta = board.asset_materializations_for_node("monitoring_board")[0].metadata
        line = meta["verdict"].value
        assert (line.startswith("WATCH — segment origin=EWR is getting worse — estimated: ")
                and "; drift: 100% of its input columns drifted" in line) or (
            line.startswith("ACT — inputs drifted") and
            "; worst segment origin=EWR (estimated, drift) →" in line), line
        page = Path(meta["board_path"].value).read_text()
        panel = page[page.index("<h3>Worst segments</h3>"):]
        assert "<b>origin=EWR</b> <span class='src' data-source='estimated'>" in panel
        assert "data-source='realized'" not in panel  # no label yet
