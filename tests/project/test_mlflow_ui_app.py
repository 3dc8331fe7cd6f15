"""mlflow/ui_plugin/pipo_mlflow_ui.py without a browser: the landing page it serves sets the UI's
"Machine learning" mode under the very key and value the installed MLflow UI reads (its bundle is
checked, so an MLflow upgrade that renames them fails here, not only in tests/e2e/test_ui_browser.py)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _plugin():
    spec = importlib.util.spec_from_file_location("pipo_mlflow_ui", ROOT / "mlflow" / "ui_plugin" / "pipo_mlflow_ui.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bundle() -> str:
    import mlflow.server

    (main,) = (Path(mlflow.server.app.static_folder) / "static" / "js").glob("main.*.js")
    return main.read_text(encoding="utf-8")


def test_the_setting_it_writes_is_the_one_mlflows_ui_reads():
    plugin, bundle = _plugin(), _bundle()
    # The UI's workflow-type state: useLocalStorage({key, version}) stores under `${key}_v${version}`.
    key, version = re.search(r'\(\{key:"(mlflow\.workflowType)",version:(\d+),initialValue', bundle).groups()
    assert "`${e}_v${t}`" in bundle
    assert plugin.WORKFLOW_KEY == f"{key}_v{version}"
    assert f'MACHINE_LEARNING="{plugin.WORKFLOW_DEFAULT}"' in bundle


def test_the_landing_page_sets_machine_learning_mode_before_the_ui_loads():
    import flask
    import mlflow.server

    plugin = _plugin()
    # A stand-in for MLflow's Flask app: its static folder and its `serve` view (every UI route), which
    # answers a conditional GET as MLflow's does.
    app = flask.Flask("ui", static_folder=mlflow.server.app.static_folder)
    app.add_url_rule("/", "serve", lambda: flask.send_from_directory(app.static_folder, "index.html"))
    app.add_url_rule("/other", "other", lambda: "not the UI")
    client = plugin.create_app(app).test_client()

    page = client.get("/", headers={"If-None-Match": "*"})  # a browser holding a cached plain page
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "etag" not in page.headers
    head = html[html.index("<head>") + len("<head>"):]
    assert head.startswith(plugin.SCRIPT) and head.index("main.") > len(plugin.SCRIPT)  # before the bundle
    stored = re.search(r'localStorage\.setItem\("([^"]+)",("(?:[^"\\]|\\.)*")\)', plugin.SCRIPT).groups()
    assert (stored[0], json.loads(json.loads(stored[1]))) == (plugin.WORKFLOW_KEY, "machine_learning")
    assert client.get("/other").get_data(as_text=True) == "not the UI"
