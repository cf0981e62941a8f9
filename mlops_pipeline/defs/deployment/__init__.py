"""The `deployment` asset group: thin Dagster wiring over `mlops_pipeline.deployment`."""
