"""The `monitoring` asset group: thin Dagster wiring over `mlops_pipeline.monitoring`."""
