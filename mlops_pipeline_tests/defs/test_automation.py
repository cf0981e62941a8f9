"""Three triggers, one job: the schedule, the new-data sensor and the drift sensor; and alerts."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pandas as pd
import pytest

from mlops_pipeline.data.landing import land_months
from mlops_pipeline.data.snapshots import content_id, read_landing
from mlops_pipeline.defs import automation
from mlops_pipeline.defs.definitions import build_definitions, build_resources
from mlops_pipeline.defs.resources import AlertResource, DatasetResource, StorageResource
from mlops_pipeline.monitoring.alerts import Alerts
from mlops_pipeline.settings import Settings
from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG, load_spec
from mlops_pipeline_tests.conftest import SAMPLE


def _resources(data_dir):
    return {"dataset": DatasetResource(), "storage": StorageResource(root=str(data_dir))}


def _tick(sensor, instance, cursor, resources):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=resources,
        definitions=build_definitions(),
    )
    return sensor.evaluate_tick(context)


def test_schedule_targets_the_loop_job_and_tags_its_runs(data_dir, monkeypatch):
    monkeypatch.setenv("MLOPS_RETRAIN_CRON", "15 2 * * *")
    schedule = automation.build_schedule(Settings.from_env().retrain_cron)
    assert schedule.job_name == "mlops_loop" and schedule.cron_schedule == "15 2 * * *"
    with dg.build_schedule_context(resources=build_resources()) as context:
        data = schedule.evaluate_tick(context)
    assert len(data.run_requests) == 1
    assert data.run_requests[0].tags[automation.TRIGGER_TAG] == "schedule"
    defs = build_definitions()
    assert defs.resolve_schedule_def("weekly_retrain").job_name == "mlops_loop"


@pytest.mark.slow
def test_the_schedule_skips_a_tick_when_nothing_changed_since_the_champion(trained_flights, flights):
    schedule = automation.build_schedule()

    def tick():
        with dg.build_schedule_context(resources=build_resources()) as context:
            return schedule.evaluate_tick(context)

    skipped = tick()

    assert skipped.run_requests == []
    assert skipped.skip_message.startswith("nothing changed since v1 (snapshot ")
    land_months(trained_flights / "landing" / "flights", (4,), SAMPLE, frame=flights)
    ticked = tick()
    assert len(ticked.run_requests) == 1 and not ticked.skip_message
    assert ticked.run_requests[0].tags[automation.TRIGGER_TAG] == "schedule"


def test_new_data_sensor_requests_one_run_per_new_content_id(data_dir, land):
    land(months=(1, 2))
    resources = _resources(data_dir)
    pattern = str(data_dir / "landing" / "flights" / "*.parquet")
    with dg.DagsterInstance.ephemeral() as instance:
        first = _tick(automation.new_data_sensor, instance, None, resources)
        assert len(first.run_requests) == 1
        request = first.run_requests[0]
        assert request.run_key == content_id(read_landing(pattern, "parquet"))
        assert request.tags[automation.TRIGGER_TAG] == "new_data"

        again = _tick(automation.new_data_sensor, instance, first.cursor, resources)
        assert again.run_requests == [] and "unchanged" in again.skip_message

        # The same rows rewritten in another order: files changed, content did not.
        batch = data_dir / "landing" / "flights" / "flights_2013_02.parquet"
        pd.read_parquet(batch).sample(frac=1.0, random_state=3).to_parquet(batch, index=False)
        rewritten = _tick(automation.new_data_sensor, instance, again.cursor, resources)
        assert rewritten.run_requests == [] and "did not" in rewritten.skip_message

        land(months=(3,))
        new = _tick(automation.new_data_sensor, instance, rewritten.cursor, resources)
        assert len(new.run_requests) == 1
        assert new.run_requests[0].run_key not in (None, request.run_key)


@pytest.mark.slow
def test_a_snapshotted_content_id_is_not_retrained(data_dir, land):
    land(months=(1, 2, 3))
    resources = _resources(data_dir)
    defs = build_definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        job = defs.resolve_job_def("mlops_loop").get_subset(
            asset_selection={dg.AssetKey("dataset_snapshot")}
        )
        assert job.execute_in_process(instance=instance).success
        tick = _tick(automation.new_data_sensor, instance, None, resources)
        assert tick.run_requests == [] and "already the latest snapshot" in tick.skip_message


@pytest.mark.slow
def test_drift_failure_requests_retraining_once_per_cooldown(trained_flights, flights):
    # trained_flights: Jan-Mar landed, the loop run, v1 champion (this test's own copy)
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        resources = {"dataset": DatasetResource()}
        calm = _tick(automation.drift_sensor, instance, None, resources)
        assert calm.run_requests == [] and "no new drift" in calm.skip_message

        land_months(trained_flights / "landing" / "flights", (12,), SAMPLE, frame=flights)
        # Drift compares the run's new rows (December) with the champion's training data, so the
        # run takes the snapshot and its features too (their data checks are tested elsewhere).
        drift_only = defs.resolve_job_def("mlops_loop").get_subset(
            asset_selection={dg.AssetKey(a) for a in
                             ("dataset_snapshot", "training_features", "drift_report")},
            asset_check_selection={dg.AssetCheckKey(dg.AssetKey("drift_report"), name)
                                   for name in ("input_drift", "prediction_drift")},
        )
        assert drift_only.execute_in_process(instance=instance).success  # WARN: the run still succeeds
        fired = _tick(automation.drift_sensor, instance, calm.cursor, resources)
        assert len(fired.run_requests) == 1
        assert fired.run_requests[0].tags[automation.TRIGGER_TAG] == "drift"

        assert drift_only.execute_in_process(instance=instance).success  # drift persists
        cooled = _tick(automation.drift_sensor, instance, fired.cursor, resources)
        assert cooled.run_requests == [] and "cooldown" in cooled.skip_message

        expired = json.loads(cooled.cursor)
        expired["triggered_at"] -= 25 * 3600  # the 24 h cooldown has passed
        assert drift_only.execute_in_process(instance=instance).success
        later = _tick(automation.drift_sensor, instance, json.dumps(expired), resources)
        assert len(later.run_requests) == 1


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hook.received
    server.shutdown()
    server.server_close()


def test_alert_resource_posts_to_a_webhook_and_survives_one_that_is_down(webhook):
    url, received = webhook
    assert Alerts(webhook_url=url).send("drift!", kind="test") is True
    assert received == [{"text": "drift!", "kind": "test"}]
    assert Alerts(webhook_url="http://127.0.0.1:9/nothing", timeout_seconds=1).send("x") is False


@pytest.mark.slow
def test_failed_checks_and_failed_runs_raise_alerts(data_dir, land, webhook):
    url, received = webhook
    land()
    batch = data_dir / "landing" / "flights" / "flights_2013_03.parquet"
    df = pd.read_parquet(batch)
    df.loc[df.sample(frac=0.9, random_state=0).index, "temp"] = None
    df.to_parquet(batch, index=False)
    defs = build_definitions()
    alerts = AlertResource(webhook_url=url, config_path=DEFAULT_DATASET_CONFIG)  # pages the owner
    with dg.DagsterInstance.ephemeral() as instance:
        job = defs.resolve_job_def("mlops_loop")
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        tick = _tick(automation.alert_on_check_failure, instance, None, {"alerts": alerts})
        assert "1 check failure alert" in tick.skip_message
        # The batch is checked on its own first: its null rate blocks before training_features.
        assert received[-1]["check"] == "dataset_snapshot:batch_null_rates"
        assert "temp" in received[-1]["text"]
        again = _tick(automation.alert_on_check_failure, instance, tick.cursor, {"alerts": alerts})
        assert "no new failed checks" in again.skip_message and len(received) == 1

        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(
            sensor_name="alert_on_run_failure", dagster_event=failure, dagster_instance=instance,
            dagster_run=instance.get_run_by_id(result.run_id), resources={"alerts": alerts},
        ).for_run_failure()
        automation.alert_on_run_failure(context)
        assert received[-1]["kind"] == "run_failure" and result.run_id in received[-1]["text"]
        # every alert the loop sends names whose model it is, who is paged and the runbook
        owner = load_spec(DEFAULT_DATASET_CONFIG)
        for alert in received:
            assert (alert["owner"], alert["runbook_url"], alert["model"]) == (
                owner.owner, owner.runbook_url, owner.name) and f"owner: {owner.owner}" in alert["text"]
