"""The only Dagster in the project: assets grouped by stage (data/, training/, deployment/, monitoring/),
checks beside them as thin wrappers over core functions, resources as adapters over the core's plain
clients, automation and the run executor. `mlops_pipeline.defs.definitions` assembles them."""
