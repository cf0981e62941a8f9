"""The code location: every asset, check, job and resource of the loop.

Loading this module imports only dagster, pandas and the project's light modules; MLflow,
scikit-learn and Evidently are imported inside the asset bodies that use them, so the UI (and every
run step, which re-imports this module) starts fast. Every resource, the schedule's cron and the
release guard's cadence come from one `Settings` value (`mlops_pipeline.settings`): read from the
environment here for `dg dev` and the run workers, handed in by the CLI (the gate's isolated).
"""

from __future__ import annotations

import dagster as dg

from mlops_pipeline.defs import automation
from mlops_pipeline.defs.data import dataset_snapshot, training_features
from mlops_pipeline.defs.deployment import challenger_analysis, registered_model
from mlops_pipeline.defs.monitoring import (
    drift_report,
    estimated_performance,
    labeling_queue,
    monitoring_board,
    traffic,
)
from mlops_pipeline.defs.resources import AlertResource, DatasetResource, MLflowResource, StorageResource
from mlops_pipeline.defs.resources.io_manager import io_manager
from mlops_pipeline.defs.resources.predictions import PredictionStoreResource
from mlops_pipeline.defs.resources.search import SearchResource
from mlops_pipeline.defs.resources.serving import ServingResource
from mlops_pipeline.defs.runtime import RunCachedIOManager, run_worker_executor
from mlops_pipeline.defs.training import trained_model
from mlops_pipeline.deployment.tags import TRAINING_TAG
from mlops_pipeline.profile import check_profile
from mlops_pipeline.redaction import install
from mlops_pipeline.settings import ENV_VARS, Settings

TRAINING_RUN_TAGS = {TRAINING_TAG: "true"}


def _config(settings: Settings, name: str) -> str | dg.EnvVar:
    """A setting as resource config: an `EnvVar` when it came from the environment (resolved when a
    run starts, shown by name in the UI, never its value), else the value itself."""
    var = ENV_VARS[name]
    return dg.EnvVar(var) if var in settings.environment else getattr(settings, name)


def _explicit(settings: Settings, name: str) -> str:
    """A value the resources otherwise find themselves (from the same variable, or a default under
    the data dir): passed only when it was not read from the environment, as in the gate's sandbox."""
    return "" if ENV_VARS.get(name) in settings.environment else getattr(settings, name)


def build_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """Every resource from one `Settings` (default: read from the environment now).

    `MLOPS_PROFILE=production` plus the variables listed in `mlops_pipeline.profile` (and
    docs/production.md) move every resource off the local defaults; an isolated `Settings` (the
    CI gate's) points all of them at its own directory.
    """
    s = Settings.from_env() if settings is None else settings
    check_profile(s.as_env())
    storage_root = _config(s, "storage_root") or _config(s, "data_dir")
    return {
        # S3 in production, else Dagster's default (pickles under the instance's storage dir).
        "io_manager": RunCachedIOManager(persistent=io_manager(s.as_env()) or dg.FilesystemIOManager()),
        "dataset": DatasetResource(config_path=_config(s, "dataset_config")),
        "storage": StorageResource(root=storage_root, endpoint_url=_config(s, "s3_endpoint_url")),
        "mlflow": MLflowResource(
            tracking_uri=_config(s, "tracking_uri"),
            ui_url=_config(s, "mlflow_ui_url"),
            artifact_location=_explicit(s, "artifact_location"),
            history_url=_explicit(s, "predictions_url"),
        ),
        "alerts": AlertResource(webhook_url=_config(s, "alert_webhook_url"),
                                config_path=_config(s, "dataset_config")),  # pages the spec's owner
        "predictions": PredictionStoreResource(url=_config(s, "predictions_url")),
        # model.search's Optuna studies: a database in production, so parallel trainings share one.
        "search": SearchResource(storage_url=_config(s, s.search_storage_setting)
                                 if s.search_storage_setting else ""),
        # No URL: the board finds a running server through the state file it writes.
        "serving": ServingResource(url=_config(s, "serving_url"), data_dir=_config(s, "data_dir"),
                                   state_file=_config(s, "serve_state_file")),
    }


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """The code location, configured by `settings` (default: read from the environment once, here).

    The CLI hands in the `Settings` it parsed (the gate an isolated one); `dagster dev` and the
    run workers load `defs`, which reads the environment.
    """
    s = Settings.from_env() if settings is None else settings
    install(s.secrets())  # every run and step process loads this: no credential in its output
    modules = [dataset_snapshot, training_features, trained_model, registered_model, drift_report, traffic,
               estimated_performance, labeling_queue, challenger_analysis]
    assets = dg.load_assets_from_modules(modules)
    checks = dg.load_asset_checks_from_modules(modules)
    assets.append(monitoring_board.build_monitoring_board([*assets, *checks]))  # the board lists them
    production_assets = dg.AssetSelection.assets(
        *dg.load_assets_from_modules([traffic, estimated_performance, labeling_queue]))
    board_asset = dg.AssetSelection.assets("monitoring_board")
    analysis_asset = dg.AssetSelection.assets("challenger_analysis")
    loop_job = dg.define_asset_job(
        "mlops_loop",
        selection=dg.AssetSelection.all() - production_assets - board_asset - analysis_asset,
        description="The whole loop: snapshot -> features -> train -> register -> gate -> drift "
        "of the new data -> champion. Promotion is the last step: nothing after it can fail the "
        "run once the alias moved. Tagged so that only one runs at a time (dagster.yaml).",
        tags=TRAINING_RUN_TAGS,
    )
    production_job = automation.production_job(production_assets)
    board_job = dg.define_asset_job(
        "monitoring_board_job", selection=board_asset, description="Refresh the on-call board."
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[loop_job, production_job, board_job],
        schedules=[
            automation.build_schedule(s.retrain_cron),
            automation.build_production_schedule(production_job),
            dg.ScheduleDefinition(
                name="hourly_board", job=board_job, cron_schedule="5 * * * *",
                default_status=dg.DefaultScheduleStatus.RUNNING,
                description="Refreshes the monitoring board every hour.",
            ),
        ],
        sensors=[
            automation.new_data_sensor,
            automation.drift_sensor,
            automation.estimated_performance_sensor,
            automation.alert_on_run_failure,
            automation.alert_on_check_failure,
            automation.build_release_guard(s.release_guard_seconds, s.serve_token),
        ],
        resources=build_resources(s),
        executor=run_worker_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location `dg dev` and the run workers load: configured by this process's environment."""
    return build_definitions()
