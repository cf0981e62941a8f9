"""The estimated-performance sensor on a real (ephemeral) instance: a failed `estimated_quality`
evaluation requests one gated retraining, tagged with its trigger, then waits out the cooldown.
(The whole path, from served traffic to the retraining, is the slow test in
mlops_pipeline_tests/defs/monitoring/test_estimated_performance.py.)"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from mlops_pipeline.defs import automation
from mlops_pipeline.defs.resources import DatasetResource


def _estimate(instance: dg.DagsterInstance, passed: bool) -> None:
    instance.report_runless_asset_event(dg.AssetCheckEvaluation(
        asset_key=automation.ESTIMATE_CHECK.asset_key, check_name=automation.ESTIMATE_CHECK.name,
        passed=passed, metadata={}, severity=dg.AssetCheckSeverity.WARN))


def _tick(instance: dg.DagsterInstance, cursor: str | None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                      resources={"dataset": DatasetResource()})
    return automation.estimated_performance_sensor.evaluate_tick(context)


def test_estimated_degradation_requests_a_retraining_once_per_cooldown(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLOPS_DATASET_CONFIG", raising=False)
    with dg.DagsterInstance.ephemeral() as instance:
        nothing = _tick(instance, None)
        assert not nothing.run_requests and "no new performance estimate" in nothing.skip_message

        _estimate(instance, passed=True)
        calm = _tick(instance, nothing.cursor)
        assert not calm.run_requests and "clear" in calm.skip_message

        _estimate(instance, passed=False)
        fired = _tick(instance, calm.cursor)
        assert len(fired.run_requests) == 1
        request = fired.run_requests[0]
        assert request.tags[automation.TRIGGER_TAG] == "estimated_performance"
        assert request.tags["mlops/estimate_check"] == "estimated_performance:estimated_quality"
        assert automation.estimated_performance_sensor.job_name == automation.LOOP_JOB

        assert not _tick(instance, fired.cursor).run_requests  # the same evaluation: nothing new
        _estimate(instance, passed=False)  # still degraded the next day, within the cooldown
        cooled = _tick(instance, fired.cursor)
        assert not cooled.run_requests and "cooldown" in cooled.skip_message

        expired = {**json.loads(cooled.cursor), "triggered_at": 0.0}
        _estimate(instance, passed=False)
        later = _tick(instance, json.dumps(expired))
        assert len(later.run_requests) == 1
        assert later.run_requests[0].run_key != request.run_key


def test_one_segment_estimated_below_its_floor_requests_a_retraining_naming_it(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLOPS_DATASET_CONFIG", raising=False)
    why = ("segment origin=EWR (412 rows): roc_auc 0.5100 against the gate floor (estimated), "
           "difference -0.0900, 95% interval [-0.1400, -0.0400] entirely below -0.02")
    with dg.DagsterInstance.ephemeral() as instance:
        _estimate(instance, passed=True)  # overall: clear of the line
        key = automation.SEGMENT_ESTIMATE_CHECK
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=key.asset_key, check_name=key.name, passed=False, metadata={},
            severity=dg.AssetCheckSeverity.WARN, description=why))

        fired = _tick(instance, None)

        (request,) = fired.run_requests
        assert request.tags[automation.TRIGGER_TAG] == "estimated_performance"
        assert request.tags["mlops/estimate_check"] == "estimated_performance:estimated_segment_quality"
        assert request.tags["mlops/estimate_reason"] == why
        assert not _tick(instance, fired.cursor).run_requests  # seen: both evaluations
