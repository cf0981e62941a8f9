"""The prediction store, without Dagster: what production saw and said, one row per request.

`schema` (the tables), `ids` (batch and request ids), `codec` (a request as one column-wise row,
rows back as one row per record), `engine` (the database connection and its SQLite settings) and
`store` (`PredictionStore`: writes, labels, reads). Importers use the names exported here;
`defs.resources.predictions` adapts the store for Dagster.

The names that need pandas (`PredictionBatch`, `PredictionStore`, `served_rows`) load on first
use, so what only shares the database (the alias history) or the ids stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlops_pipeline.deployment.tags import ROLES, SERVED_ROLES
from mlops_pipeline.monitoring.predictions.engine import default_url, open_engine
from mlops_pipeline.monitoring.predictions.ids import (
    MAX_BATCH_RECORDS,
    RECORD_BITS,
    new_batch_id,
    parse_request_id,
    request_ids,
)
from mlops_pipeline.monitoring.predictions.schema import COLUMNS, OUT_OF_DOMAIN, PROBABILITIES

if TYPE_CHECKING:
    from mlops_pipeline.monitoring.predictions.codec import PredictionBatch
    from mlops_pipeline.monitoring.predictions.store import PredictionStore, served_rows

#: Exported names defined in modules that import pandas: name -> module, loaded on first use.
_LAZY = {"PredictionBatch": "codec", "PredictionStore": "store", "served_rows": "store"}

__all__ = [
    "COLUMNS",
    "MAX_BATCH_RECORDS",
    "OUT_OF_DOMAIN",
    "PROBABILITIES",
    "RECORD_BITS",
    "ROLES",
    "SERVED_ROLES",
    "PredictionBatch",
    "PredictionStore",
    "default_url",
    "new_batch_id",
    "open_engine",
    "parse_request_id",
    "request_ids",
    "served_rows",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
