#!/bin/sh
# The MLflow tracking server of the production profile: Postgres backend store (runs, registry,
# aliases) and S3 artifact store, proxied (clients upload/download through this server, so only the
# server holds S3 credentials). Env: MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION,
# MLFLOW_S3_ENDPOINT_URL (non-AWS stores), AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or a role).
# MLFLOW_HOST defaults to loopback; a container sets MLFLOW_HOST=0.0.0.0 (its network is the boundary).
# `env --default-signal` makes it stoppable with SIGTERM even when started from a background shell.
set -eu
: "${MLFLOW_BACKEND_STORE_URI:?postgresql+psycopg2://user:pass@host:5432/mlflow}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?s3://bucket/mlflow}"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"  # no calls home
exec env --default-signal=INT,TERM mlflow server \
  --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}" \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  --workers "${MLFLOW_WORKERS:-2}"
