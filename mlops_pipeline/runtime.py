"""How every run of the code location executes: in one process, with a collector tuned for a batch
job.

In-process, not Dagster's default multiprocess executor: the loop is a chain (each step needs the
previous one), so one process per step buys no parallelism, and each step's process re-imported
Dagster, MLflow, scikit-learn and Evidently and unpickled its inputs again. A scheduled retraining
of the flights year took 89.6 s that way against 37 s in one process (`dagster job execute` of
`mlops_loop`, before and after; docs/benchmarks.md).

The collector: a run imports MLflow, scikit-learn, skops and Evidently, ~600k objects that live
until the run ends. CPython's full collection walks every one of them and runs whenever the heap
has grown by a quarter: eleven times per run of the loop, 0.2-0.6 s each on a 2-core machine
(3-4 s of a 36 s run). Checking for a full collection every 100 young collections instead of 10
leaves the young generations as they are and takes that to about 1 s; cyclic garbage that reaches
the oldest generation is freed later, which a process that lives for one run does not notice
(peak memory is measured by bench/loop.py). A test process that calls `run_loop` keeps the
setting for its remaining tests: full collections only come less often.
"""

from __future__ import annotations

import gc

import dagster as dg

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
