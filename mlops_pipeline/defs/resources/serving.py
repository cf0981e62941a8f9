"""The `serving` resource: configuration shown in the Dagster UI, a plain `ServingProcess` for code."""

from __future__ import annotations

import dagster as dg

from mlops_pipeline.monitoring.serving_process import ServingProcess
from mlops_pipeline.settings import Settings


class ServingResource(dg.ConfigurableResource):
    """The deployed server (`mlops_pipeline.monitoring.serving_process`); code receives the
    `ServingProcess` client, annotated `dg.ResourceParam[ServingProcess]`. Empty `url`: the server
    is found through the state file a running one writes (`Settings.serving_state_path`, from
    `data_dir` and `state_file`, the settings' `MLOPS_DATA_DIR` and `MLOPS_SERVE_STATE_FILE`)."""

    url: str = ""
    timeout_seconds: float = 3.0
    data_dir: str = ""
    state_file: str = ""

    def create_resource(self, context: dg.InitResourceContext) -> ServingProcess:  # type: ignore[override]
        settings = Settings(data_dir=self.data_dir, serve_state_file=self.state_file)
        return ServingProcess(self.url, self.timeout_seconds, state_path=settings.serving_state_path)
