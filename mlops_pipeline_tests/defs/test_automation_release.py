"""The release guard's wiring: it waits while a training run may move aliases, and does nothing
when the dataset spec turns it off (its decisions are tested in deployment/test_release.py, and
end to end against real servers in serving/test_release_guard.py)."""

from __future__ import annotations

import uuid

import dagster as dg
import yaml
from dagster._core.storage.dagster_run import DagsterRun

from mlops_pipeline.defs.automation import LOOP_JOB, build_release_guard, training_in_progress
from mlops_pipeline.defs.resources import AlertResource, DatasetResource, MLflowResource, StorageResource
from mlops_pipeline.defs.resources.predictions import PredictionStoreResource
from mlops_pipeline.defs.resources.serving import ServingResource
from mlops_pipeline.spec import PROJECT_ROOT


def _run(instance: dg.DagsterInstance, job: str, status: dg.DagsterRunStatus, tags=None) -> None:
    instance.add_run(DagsterRun(job_name=job, run_id=str(uuid.uuid4()), status=status, tags=tags or {}))


def test_a_loop_run_in_progress_holds_the_guard_and_a_finished_one_does_not():
    with dg.DagsterInstance.ephemeral() as instance:
        assert not training_in_progress(instance)
        _run(instance, LOOP_JOB, dg.DagsterRunStatus.SUCCESS)
        _run(instance, "production_monitoring", dg.DagsterRunStatus.STARTED)
        assert not training_in_progress(instance)
        _run(instance, "retrain_elsewhere", dg.DagsterRunStatus.STARTING, {"mlops/training": "true"})
        assert training_in_progress(instance)
    with dg.DagsterInstance.ephemeral() as instance:
        _run(instance, LOOP_JOB, dg.DagsterRunStatus.STARTED)
        assert training_in_progress(instance)


def test_guard_false_in_the_spec_only_skips(tmp_path):
    raw = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    raw["release"] = {"guard": False}
    config = tmp_path / "flights.yaml"
    config.write_text(yaml.safe_dump(raw))
    resources = {
        "dataset": DatasetResource(config_path=str(config)),
        "mlflow": MLflowResource(tracking_uri="http://127.0.0.1:9"),  # never reached
        "predictions": PredictionStoreResource(url=f"sqlite:///{tmp_path / 'p.db'}"),
        "serving": ServingResource(), "alerts": AlertResource(), "storage": StorageResource(),
    }
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources)
        result = build_release_guard().evaluate_tick(context)
    assert "release.guard is false" in result.skip_message and not result.run_requests
