"""Which dataset the loop runs on: a path to a spec, resolved when a run starts."""

from __future__ import annotations

import dagster as dg

from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG, DatasetSpec, load_spec


class DatasetResource(dg.ConfigurableResource):
    """Points the loop at a dataset spec (`data/configs/*.yaml`); set `MLOPS_DATASET_CONFIG`."""

    config_path: str = DEFAULT_DATASET_CONFIG

    def spec(self) -> DatasetSpec:
        return load_spec(self.config_path)
