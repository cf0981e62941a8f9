"""The `training` asset group: thin Dagster wiring over `mlops_pipeline.training`."""
