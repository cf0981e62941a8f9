"""How runs execute: every job in one process, in a run worker whose collector is tuned."""

from __future__ import annotations

import gc

import dagster as dg
import pytest

from mlops_pipeline.definitions import build_definitions
from mlops_pipeline.runtime import COLLECTOR_THRESHOLDS, run_worker_executor, tune_collector


@pytest.fixture
def default_collector():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    yield
    gc.set_threshold(*saved)


def test_every_job_runs_in_one_process():
    defs = build_definitions()
    jobs = [job.name for job in defs.resolve_all_job_defs()]
    assert "mlops_loop" in jobs and "production_monitoring" in jobs
    for name in jobs:
        assert defs.resolve_job_def(name).executor_def.name == "in_process", name


def test_tuning_collects_the_oldest_generation_less_often_and_keeps_the_young(default_collector):
    tune_collector()
    assert gc.get_threshold() == (700, 10, COLLECTOR_THRESHOLDS[2])
    gc.set_threshold(500, 5, 1000)  # a process tuned by someone else keeps its own choice
    tune_collector()
    assert gc.get_threshold() == (500, 5, 1000)


@dg.op
def report_collector() -> tuple[int, int, int]:
    return gc.get_threshold()


@dg.job(executor_def=run_worker_executor)
def collector_job():
    report_collector()


def test_a_run_through_the_executor_tunes_its_process_before_the_first_step(default_collector):
    # execute_job uses the job's own executor, as a run worker launched by the daemon does
    # (execute_in_process would swap in Dagster's test executor).
    with (
        dg.instance_for_test() as instance,
        dg.execute_job(dg.reconstructable(collector_job), instance) as result,
    ):
        assert result.success
        assert result.output_for_node("report_collector") == (700, 10, COLLECTOR_THRESHOLDS[2])
