#!/usr/bin/env bash
# Serve the MLflow UI for the embedded store (sqlite + artifacts under mlflow/) on 127.0.0.1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false DO_NOT_TRACK=true
exec "${PYTHON_BIN:-$here/../.venv/bin}/mlflow" ui \
  --backend-store-uri "sqlite:///$here/mlflow.db" \
  --default-artifact-root "$here/artifacts" \
  --host 127.0.0.1 --port "${MLFLOW_PORT:-5000}"
