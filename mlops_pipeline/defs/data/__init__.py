"""The `data` asset group: thin Dagster wiring over `mlops_pipeline.data`."""
