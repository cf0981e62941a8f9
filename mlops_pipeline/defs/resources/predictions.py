"""The prediction store as a Dagster resource: a thin adapter over `monitoring.predictions`."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from mlops_pipeline.monitoring.predictions import PredictionStore


class PredictionStoreResource(dg.ConfigurableResource):
    """The prediction store for Dagster assets; empty `url` means the embedded SQLite default."""

    url: str = ""

    _store: Any = PrivateAttr(default=None)

    def store(self) -> PredictionStore:
        """The process's store for this URL, opened on first use."""
        if self._store is None:
            self._store = PredictionStore(self.url or None)
        return self._store
