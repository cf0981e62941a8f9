"""The MLOps loop as a Dagster code location: dataset -> features -> model -> registry -> drift."""

import os

# No network but loopback: MLflow 3 starts a usage-telemetry client at `import mlflow` (a thread
# that fetches a remote config and posts events) unless told not to; Dagster's is off in
# dagster.yaml. Set before anything imports mlflow (every entry point imports this package first);
# servers we start inherit it. An explicit MLFLOW_DISABLE_TELEMETRY=false still opts in.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
