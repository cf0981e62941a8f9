"""The `serving` resource: configuration shown in the Dagster UI, a plain `ServingProcess` for code."""

from __future__ import annotations

import dagster as dg

from mlops_pipeline.monitoring.serving_process import ServingProcess


class ServingResource(dg.ConfigurableResource):
    """The deployed server (`mlops_pipeline.monitoring.serving_process`); code receives the
    `ServingProcess` client, annotated `dg.ResourceParam[ServingProcess]`. Empty: none deployed."""

    url: str = ""
    timeout_seconds: float = 3.0

    def create_resource(self, context: dg.InitResourceContext) -> ServingProcess:  # type: ignore[override]
        return ServingProcess(self.url, self.timeout_seconds)
