"""How every run of the code location executes: in one process, with a collector tuned for a batch
job, and step outputs handed to later steps in memory.

In-process, not Dagster's default multiprocess executor: the loop is a chain (each step needs the
previous one), so one process per step buys no parallelism and re-imports Dagster, MLflow,
scikit-learn and Evidently and unpickles its inputs in every step.

The collector: a run holds the ~600k long-lived objects of those imports, and CPython's full
collection walks all of them each time the heap grows by a quarter. Checking for a full collection
ten times less often keeps that cost small; a process that lives for one run does not notice the
later freeing of cyclic garbage. What both choices save is measured in docs/benchmarks.md
(bench/loop.py).
"""

import gc
from typing import Any

import dagster as dg
import pandas as pd

# Young-generation thresholds as CPython's defaults; the oldest one 10x less often.
COLLECTOR_THRESHOLDS = (700, 10, 100)


def tune_collector() -> None:
    """For a process that runs one job and ends: the run worker, `mlops-pipeline run`."""
    young, middle, oldest = gc.get_threshold()
    gc.set_threshold(young, middle, max(oldest, COLLECTOR_THRESHOLDS[2]))


@dg.executor(
    name="in_process",
    config_schema=dg.in_process_executor.config_schema,
    requirements=dg.in_process_executor.get_requirements,
)
def run_worker_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Dagster's in-process executor, started in a run worker whose collector is tuned first."""
    tune_collector()
    return dg.in_process_executor.executor_creation_fn(init_context)


class _RunCache(dg.IOManager):
    """Persists every output through `persistent` and keeps it for this run's later steps."""

    def __init__(self, persistent: dg.IOManager):
        self._persistent = persistent
        self._values: dict[tuple, Any] = {}

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        self._persistent.handle_output(context, obj)
        self._values[_output_key(context)] = obj

    def load_input(self, context: dg.InputContext) -> Any:
        key = _input_key(context)
        if key not in self._values:
            return self._persistent.load_input(context)
        value = self._values[key]
        # A pickle gave each step its own copy; a shallow copy keeps one step's added or dropped
        # columns out of the next step's frame at no cost (values are shared: inputs are read-only).
        return value.copy(deep=False) if isinstance(value, pd.DataFrame) else value


def _output_key(context: dg.OutputContext) -> tuple:
    partitions = tuple(context.asset_partition_keys) if context.has_asset_partitions else ()
    return (*context.get_identifier(), partitions)


def _input_key(context: dg.InputContext) -> tuple | None:
    """The key of the output this input reads, if this run produced it: same run, step, output and
    partitions. An input spanning other partitions (a window) goes to the persistent store."""
    upstream = context.upstream_output
    if upstream is None:
        return None
    partitions = tuple(context.asset_partition_keys) if context.has_asset_partitions else ()
    return (*upstream.get_identifier(), partitions)


class RunCachedIOManager(dg.ConfigurableIOManagerFactory):
    """Step outputs stored by `persistent` as before, and also kept in memory until the run ends,
    so the later steps of the same run read them back without unpickling.

    The loop's feature frame is read by three steps (its checks, training, registration); without
    this each would unpickle it again. Every output is still written, so re-executing a step from
    the UI, or a run in another process, reads it from `persistent` exactly as before. The price: a
    value lives until its run ends, not until its last reader is done.
    """

    persistent: dg.ResourceDependency[dg.IOManager]

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        return _RunCache(self.persistent)
