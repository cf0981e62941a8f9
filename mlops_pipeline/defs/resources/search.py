"""The `search` resource: where `model.search` keeps its Optuna studies (`training.search`)."""

from __future__ import annotations

import dagster as dg


class SearchResource(dg.ConfigurableResource):
    """`storage_url`: the SQLAlchemy URL of the database holding the studies, so processes training
    the same thing share one study (`MLOPS_SEARCH_STORAGE`, or the production profile's Postgres);
    empty: each study in memory."""

    storage_url: str = ""
