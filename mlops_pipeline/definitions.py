"""The code location: every asset, check, job and resource of the loop.

Loading this module imports only dagster, pandas and the project's light modules; MLflow,
scikit-learn and Evidently are imported inside the asset bodies that use them, so the UI (and every
run step, which re-imports this module) starts fast.
"""

from __future__ import annotations

import os

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
from mlops_pipeline.defs.resources.predictions import PredictionStoreResource
from mlops_pipeline.defs.resources.serving import ServingResource
from mlops_pipeline.defs.runtime import RunCachedIOManager, run_worker_executor
from mlops_pipeline.defs.training import trained_model
from mlops_pipeline.profile import check_profile, io_manager
from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG

TRAINING_TAG = {"mlops/training": "true"}


def _env(name: str, default: str = "") -> str | dg.EnvVar:
    """An `EnvVar` (resolved when a run starts, shown as such in the UI) when set, else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources() -> dict[str, dg.ConfigurableResource]:
    """Configuration by environment only: `MLOPS_PROFILE=production` plus the variables listed in
    `mlops_pipeline.profile` (and docs/production.md) move every resource off the local defaults."""
    check_profile()
    return {
        # S3 in production, else Dagster's default (pickles under the instance's storage dir).
        "io_manager": RunCachedIOManager(persistent=io_manager() or dg.FilesystemIOManager()),
        "dataset": DatasetResource(
            config_path=_env("MLOPS_DATASET_CONFIG", DEFAULT_DATASET_CONFIG)
        ),
        "storage": StorageResource(
            root=_env("MLOPS_STORAGE_ROOT") or _env("MLOPS_DATA_DIR"),
            endpoint_url=_env("MLOPS_S3_ENDPOINT_URL"),
        ),
        "mlflow": MLflowResource(
            tracking_uri=_env("MLFLOW_TRACKING_URI"),
            ui_url=_env("MLOPS_MLFLOW_UI_URL"),
        ),
        "alerts": AlertResource(webhook_url=_env("MLOPS_ALERT_WEBHOOK_URL")),
        "predictions": PredictionStoreResource(url=_env("MLOPS_PREDICTIONS_URL")),
        "serving": ServingResource(url=_env("MLOPS_SERVING_URL")),
    }


def build_definitions() -> dg.Definitions:
    modules = [dataset_snapshot, training_features, trained_model, registered_model, drift_report, traffic,
               estimated_performance, labeling_queue, monitoring_board, challenger_analysis]
    assets = dg.load_assets_from_modules(modules)
    checks = dg.load_asset_checks_from_modules(modules)
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
        tags=TRAINING_TAG,
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
            automation.build_schedule(),
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
            automation.release_guard,
        ],
        resources=build_resources(),
        executor=run_worker_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
