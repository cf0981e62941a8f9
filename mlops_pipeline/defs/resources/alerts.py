"""The `alerts` resource: configuration shown in the Dagster UI, a plain `Alerts` handed to code."""

from __future__ import annotations

import dagster as dg

from mlops_pipeline.monitoring.alerts import Alerts


class AlertResource(dg.ConfigurableResource):
    """Where alerts go (`mlops_pipeline.monitoring.alerts`); sensors receive the `Alerts` client,
    annotated `dg.ResourceParam[Alerts]`. Set `MLOPS_ALERT_WEBHOOK_URL` to also POST them. With
    `config_path` (the dataset config) every alert names the spec's owner, runbook and model."""

    webhook_url: str = ""
    timeout_seconds: float = 5.0
    config_path: str = ""

    def create_resource(self, context: dg.InitResourceContext) -> Alerts:  # type: ignore[override]
        if not self.config_path:
            return Alerts(self.webhook_url, self.timeout_seconds)
        from mlops_pipeline.spec import load_spec

        return Alerts.for_spec(load_spec(self.config_path), self.webhook_url, self.timeout_seconds)
