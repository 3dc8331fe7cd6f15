#!/usr/bin/env bash
# Serve the MLflow UI for the embedded store (sqlite + artifacts under mlflow/) on 127.0.0.1.
# Overrides (the UI test serves a throwaway store): MLFLOW_STORE_DIR, a folder holding mlflow.db
# and artifacts/ (default: this folder); MLFLOW_PORT (default 5000); MLFLOW_WORKERS (default:
# mlflow's own, 4); PYTHON_BIN, the folder holding the mlflow command (default: the venv's bin/).
# The app is MLflow's own with one change (ui_plugin/pipo_mlflow_ui.py): the UI opens in its
# "Machine learning" mode, so an experiment opens on its runs table rather than GenAI traces.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
store="$(cd "${MLFLOW_STORE_DIR:-$here}" && pwd)"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false DO_NOT_TRACK=true
# ui_plugin/ holds the plugin's module and the entry point (mlflow.app: pipo-ui) that names it.
export PYTHONPATH="$here/ui_plugin${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON_BIN:-$here/../.venv/bin}/mlflow" ui \
  --app-name pipo-ui \
  --backend-store-uri "sqlite:///$store/mlflow.db" \
  --default-artifact-root "$store/artifacts" \
  --host 127.0.0.1 --port "${MLFLOW_PORT:-5000}" \
  ${MLFLOW_WORKERS:+--workers "$MLFLOW_WORKERS"}
