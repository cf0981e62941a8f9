"""Helpers every command shares: the Dagster instance, the dataset choice, running the loop."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mlops_pipeline.settings import PROJECT_ROOT, data_dir


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME defaults to data/dagster_home, holding the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or data_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    instance_yaml = home / "dagster.yaml"
    if not instance_yaml.exists():
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", instance_yaml)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def set_dataset(config: str | None) -> None:
    if config:
        os.environ["MLOPS_DATASET_CONFIG"] = str(Path(config).resolve())


def run_loop(run_config: dict | None = None, raise_on_error: bool = False):
    """Execute the `mlops_loop` job in this process, recorded in the DAGSTER_HOME instance."""
    import dagster as dg

    from mlops_pipeline.definitions import build_definitions
    from mlops_pipeline.runtime import tune_collector

    ensure_dagster_home()
    tune_collector()  # this process runs the job and ends, like a run worker
    job = build_definitions().resolve_job_def("mlops_loop")
    with dg.DagsterInstance.get() as instance:
        return job.execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=raise_on_error
        )


def print_checks(result) -> bool:
    """Print every check's verdict; True when no ERROR-severity check failed."""
    ok = True
    print(f"{'asset':<20} {'check':<28} {'passed':<7} {'severity':<8} description")
    for evaluation in result.get_asset_check_evaluations():
        severity = evaluation.severity.value
        print(
            f"{evaluation.asset_key.to_user_string():<20} {evaluation.check_name:<28} "
            f"{str(evaluation.passed):<7} {severity:<8} {evaluation.description or ''}"
        )
        if not evaluation.passed and severity == "ERROR":
            ok = False
    return ok


