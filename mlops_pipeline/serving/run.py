"""Running a server: `serve` (what `mlops-pipeline serve` calls) in this process, or as N worker
processes on one port under a supervisor (`workers.supervise`), each building its app with
`app_from_env`.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from mlops_pipeline.monitoring.predictions import PredictionStore
from mlops_pipeline.serving.app import create_app
from mlops_pipeline.serving.settings import ServeSettings, check_exposure, configure_logging, state_path
from mlops_pipeline.serving.workers import (
    GROUP_ENV,
    METRICS_ENV,
    SETTINGS_ENV,
    check_port_free,
    create_group_dir,
    remove_state,
    supervise,
    write_state,
)
from mlops_pipeline.spec import load_spec

#: What each worker process runs (uvicorn factory): the app built from the supervisor's settings.
WORKER_APP = "mlops_pipeline.serving.run:app_from_env"


def app_from_env() -> FastAPI:
    """The app of one worker process (`serve --workers N`): settings from the supervisor."""
    settings = ServeSettings.model_validate_json(os.environ[SETTINGS_ENV])
    configure_logging(settings)
    return create_app(settings)


def serve(settings: ServeSettings) -> None:
    """Run the app with uvicorn: in this process, or as `settings.workers` worker processes on one
    port (`workers.supervise`), which share a reload signal, their status and metrics; the
    supervisor then writes the state file.

    Refuses to start (ExposureError, PortInUse; both name the fix) beyond loopback without a
    token, or when the port is taken. Every log line masks credentials (`RedactingFormatter`)."""
    import shutil

    import uvicorn

    check_exposure(settings)
    configure_logging(settings)
    check_port_free(settings.host, settings.port)
    if settings.workers == 1:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                    access_log=False, timeout_graceful_shutdown=10, log_config=None)
        return
    name = settings.model_name or load_spec().name
    PredictionStore(settings.predictions_url or None).close()  # its tables, before the workers race
    group = create_group_dir(name)
    os.environ.update({GROUP_ENV: str(group), METRICS_ENV: str(group / "metrics"),
                       SETTINGS_ENV: settings.model_dump_json()})
    state = state_path(settings, name)
    write_state(state, settings.url, name)
    try:
        status = supervise(settings.host, settings.port, settings.workers, WORKER_APP)
    finally:
        remove_state(state)
        shutil.rmtree(group, ignore_errors=True)
    if status:
        raise SystemExit(status)
