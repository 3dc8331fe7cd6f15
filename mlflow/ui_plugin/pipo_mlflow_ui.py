"""The MLflow server app of `make ui` (mlflow/ui.sh): MLflow's own, opening in "Machine learning" mode.

MLflow 3.17's UI decides from one browser-wide setting, not from the experiment, whether an experiment
opens on its runs table or on GenAI traces: the sidebar's "GenAI apps & agents" / "Machine learning"
switch, kept in the browser's localStorage (key `mlflow.workflowType_v1`, default "genai") and
overridable per link by `?workflowType=`. The experiment's `mlflow.experimentKind` tag is read only
when a feature flag is off, and this build hard-codes it on. This pipeline logs training runs and no
traces, so the page this app serves sets the switch to "Machine learning" in a browser that has not
chosen; a user who flips it keeps their choice.

An MLflow server plugin (`mlflow ui --app-name pipo-ui`), shaped like MLflow's own basic-auth app. The
`mlflow.app` entry point that names it is the dist-info folder beside this file, found because ui.sh
puts this folder on PYTHONPATH: the UI needs no reinstall of the project.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

WORKFLOW_KEY = "mlflow.workflowType_v1"  # MLflow's useLocalStorage({key: "mlflow.workflowType", version: 1})
WORKFLOW_DEFAULT = "machine_learning"  # the UI's value for "Machine learning" (its other one: "genai")
# The stored value is JSON, as the UI writes it; set before the UI's bundle runs (it is loaded deferred).
SCRIPT = ("<script>try{if(localStorage.getItem(%s)===null){localStorage.setItem(%s,%s)}}catch(e){}</script>"
          % (json.dumps(WORKFLOW_KEY), json.dumps(WORKFLOW_KEY), json.dumps(json.dumps(WORKFLOW_DEFAULT))))

log = logging.getLogger(__name__)


def index_html(static_folder: str | Path) -> str | None:
    """MLflow's index.html with SCRIPT at the top of <head>; None when there is no page to change."""
    index = Path(static_folder) / "index.html"
    if not index.is_file():
        return None  # MLflow serves its own "UI not built" page
    html = index.read_text(encoding="utf-8")
    if "<head>" not in html:
        log.warning("%s has no <head>: the UI opens in MLflow's default (GenAI) mode", index)
        return None
    return html.replace("<head>", "<head>" + SCRIPT, 1)


def create_app(app=None):
    """MLflow's server app whose landing page (the `serve` view, every UI route) carries SCRIPT. app: the
    Flask app to extend (MLflow's; a test passes its own)."""
    from flask import make_response, request

    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as mlflow_app
    from mlflow.server.fastapi_app import create_fastapi_app

    app = app or mlflow_app

    @app.before_request
    def _landing_page_in_ml_mode():
        # Answered here, before MLflow's view: its conditional GET would answer 304 to a browser holding
        # the unchanged page from a plain `mlflow ui`. No validators, so the page is always re-sent whole.
        if request.endpoint != "serve" or request.method not in ("GET", "HEAD"):
            return None
        html = index_html(app.static_folder)
        if html is None:
            return None
        response = make_response(html)
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        response.headers["Cache-Control"] = "no-cache"
        return response

    # As MLflow's basic-auth app: uvicorn (mlflow ui's default) serves the FastAPI app around Flask's.
    return create_fastapi_app(app) if _MLFLOW_SGI_NAME.get() == "uvicorn" else app
