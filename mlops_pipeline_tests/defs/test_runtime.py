"""How runs execute: every job in one process, in a run worker whose collector is tuned, with step
outputs handed to later steps in memory and persisted as before."""

from __future__ import annotations

import gc
import pickle
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.defs.runtime import (
    COLLECTOR_THRESHOLDS,
    RunCachedIOManager,
    run_worker_executor,
    tune_collector,
)


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


LOADED_FROM_DISK: list[str] = []


class CountingIOManager(dg.ConfigurableIOManager):
    """Pickles under `base_dir`, recording which outputs are read back from them."""

    base_dir: str

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        return Path(self.base_dir, *context.get_asset_identifier())

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(obj))

    def load_input(self, context: dg.InputContext):
        LOADED_FROM_DISK.append(context.asset_key.to_user_string())
        return pickle.loads(self._path(context).read_bytes())


@dg.asset
def frame() -> pd.DataFrame:
    return pd.DataFrame({"x": [1, 2, 3]})


@dg.asset
def adds_a_column(frame: pd.DataFrame) -> list[str]:
    frame["y"] = 0  # a careless step: must not leak into the next step's input
    return list(frame.columns)


@dg.asset(deps=[adds_a_column])
def reads_it_after(frame: pd.DataFrame) -> list[str]:
    return list(frame.columns)


def _run_cached(tmp_path, selection, instance) -> tuple[dg.ExecuteInProcessResult, list[str]]:
    LOADED_FROM_DISK.clear()
    persistent = CountingIOManager(base_dir=str(tmp_path / "io"))
    return dg.materialize(
        [frame, adds_a_column, reads_it_after], selection=selection, instance=instance,
        resources={"io_manager": RunCachedIOManager(persistent=persistent)},
    ), list(LOADED_FROM_DISK)


def test_a_run_hands_outputs_to_its_later_steps_in_memory_and_still_persists_them(tmp_path):
    with dg.instance_for_test() as instance:
        result, from_disk = _run_cached(tmp_path, None, instance)
        assert result.success and from_disk == []  # nothing read back from disk
        assert result.output_for_node("adds_a_column") == ["x", "y"]
        assert result.output_for_node("reads_it_after") == ["x"]  # each step got its own frame
        assert (tmp_path / "io" / "frame").exists()

        # A later run (a re-execution, another process) reads the persisted value.
        again, from_disk = _run_cached(tmp_path, ["reads_it_after"], instance)
        assert again.success and from_disk == ["frame"]
        assert again.output_for_node("reads_it_after") == ["x"]


DAYS = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_date="2026-11-05")


@dg.asset(partitions_def=DAYS)
def daily(context) -> str:
    return context.partition_key


@dg.asset(
    partitions_def=DAYS,
    ins={"daily": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1))},
)
def two_days(daily: dict[str, str]) -> list[str]:
    return sorted(daily.values())


def test_an_input_over_other_partitions_reads_the_persistent_store(tmp_path):
    io = RunCachedIOManager(persistent=dg.FilesystemIOManager(base_dir=str(tmp_path / "io")))
    with dg.instance_for_test() as instance:
        dg.materialize([daily], partition_key="2026-11-02", instance=instance,
                       resources={"io_manager": io})
        result = dg.materialize([daily, two_days], partition_key="2026-11-03", instance=instance,
                                resources={"io_manager": io})
        # The run made 11-03 itself; 11-02 comes from the store: the whole window, not the cached day.
        assert result.output_for_node("two_days") == ["2026-11-02", "2026-11-03"]
