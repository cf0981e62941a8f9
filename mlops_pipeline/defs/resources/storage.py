"""The `storage` resource: configuration shown in the Dagster UI, a plain `Storage` handed to code."""

from __future__ import annotations

import dagster as dg

from mlops_pipeline.data.storage import Storage


class StorageResource(dg.ConfigurableResource):
    """A local directory or `s3://bucket/prefix` (`mlops_pipeline.data.storage`); assets and sensors
    receive the `Storage` client, annotated `dg.ResourceParam[Storage]`."""

    root: str = ""
    endpoint_url: str = ""
    region_name: str = ""
    max_attempts: int = 3
    conditional_writes: bool = True

    def create_resource(self, context: dg.InitResourceContext) -> Storage:  # type: ignore[override]
        return Storage(self.root, self.endpoint_url, self.region_name, self.max_attempts,
                       self.conditional_writes)
