"""The MLflow UI that `make ui` serves (mlflow/ui.sh), seen in headless Chromium.

A throwaway store (tests/ui_store.py) is served by the real mlflow/ui.sh on a free port; the
browser checks that the experiment `pipo` and its runs, and the registered model `pipo-policy`
with its `champion` alias, are on screen. Screenshots go to reports/ui/ and to tmp_path.
Needs Chromium and playwright: scripts/install_browser.sh.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e_support import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("PIPO_CHROMIUM", "/usr/bin/chromium"))
REPORT_DIR = ROOT / "reports" / "ui"
SERVER_DEADLINE_S = 60
RENDER_TIMEOUT_MS = 20_000
# First-visit popups (the assistant panel, the registry promo) cover the pages in screenshots; a
# returning user has dismissed them. Keys from MLflow 3.17's UI: if they change, the popups come
# back into the screenshots, while the checks (which read the DOM) still hold.
DISMISSED_POPUPS = ("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "_mlflow_model_registry_promo_modal_dismissed_v1")


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
                "PIPO_PARENT_RUN_ID"):
        env.pop(var, None)
    return env


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The store, built in a child process so this process's MLflow globals stay untouched."""
    work = tmp_path_factory.mktemp("ui_store")
    store = work / "store"
    env = _clean_env() | {"PYTHONPATH": str(ROOT)}
    # cwd=work: anything MLflow writes relative to the cwd stays out of the checkout.
    proc = subprocess.run([sys.executable, "-m", "tests.ui_store", str(store)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"building the demo store failed:\n{proc.stderr[-3000:]}"
    return store, json.loads(proc.stdout.strip().splitlines()[-1])


def _wait_for_http(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_DEADLINE_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow/ui.sh exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    pytest.fail(f"mlflow/ui.sh did not answer {url} within {SERVER_DEADLINE_S}s:\n{log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the whole group (ui.sh execs mlflow, which forks uvicorn workers), SIGKILL if it lingers."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=15)


@pytest.fixture(scope="module")
def ui_url(demo_store: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """mlflow/ui.sh serving the demo store; the server is stopped whatever the test's outcome."""
    store, _ = demo_store
    port = free_port()
    log = tmp_path_factory.mktemp("ui_server") / "server.log"
    env = _clean_env() | {
        "MLFLOW_STORE_DIR": str(store),
        "MLFLOW_PORT": str(port),
        "MLFLOW_WORKERS": "1",  # one uvicorn worker starts in half the time on 2 cores
        "PYTHON_BIN": str(Path(sys.executable).parent),
    }
    with log.open("w") as out:
        server = subprocess.Popen([str(ROOT / "mlflow" / "ui.sh")], env=env, cwd=store, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(f"{url}/health", server, log)
        yield url
    finally:
        _stop(server)


@pytest.fixture(scope="module", autouse=True)
def browser_installed() -> None:
    """Missing Chromium or playwright is a failure, not a skip; checked before the slow fixtures."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run scripts/install_browser.sh (or set PIPO_CHROMIUM)")
    if importlib.util.find_spec("playwright") is None:
        pytest.fail(f"playwright is not installed in {sys.prefix}: run scripts/install_browser.sh")


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by playwright (`playwright install` cannot download browsers here)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # /dev/shm is small in containers; Chromium crashes tabs when it runs out.
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(RENDER_TIMEOUT_MS)
    script = "".join(f"localStorage.setItem({json.dumps(key)}, 'true');" for key in DISMISSED_POPUPS)
    context.add_init_script(script)
    page = context.new_page()
    yield page
    context.close()


def _screenshot(page, name: str, tmp_path: Path) -> Path:
    """Save to tmp_path and copy to reports/ui/; returns the reports/ui/ path."""
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot))
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    kept = REPORT_DIR / shot.name
    shutil.copyfile(shot, kept)
    print(f"screenshot: {kept} (and {shot})")
    return kept


def test_experiment_page_shows_pipo_and_its_runs(ui_url: str, demo_store: tuple[Path, dict], page,
                                                 tmp_path: Path) -> None:
    from playwright.sync_api import expect

    _, summary = demo_store
    page.goto(f"{ui_url}/#/experiments/{summary['experiment_id']}/runs")
    # The breadcrumb names the experiment; the run table is rendered by the SPA after its API calls.
    expect(page.get_by_role("link", name=summary["experiment"], exact=True).first).to_be_visible()
    parent = page.get_by_role("gridcell").filter(has=page.get_by_text("pipeline", exact=True))
    expect(parent).to_be_visible()
    parent.get_by_role("button").click()  # expand the nested stage runs under the parent
    for stage in ("sft", "rl", "verify"):
        expect(page.get_by_role("link", name=stage, exact=True)).to_be_visible()
    assert set(summary["runs"]) == {"pipeline", "sft", "rl", "verify"}
    expect(page.get_by_text(f"{len(summary['runs'])} matching runs")).to_be_visible()
    _screenshot(page, "experiment_runs", tmp_path)


def test_registry_shows_pipo_policy_with_champion_alias(ui_url: str, demo_store: tuple[Path, dict], page,
                                                        tmp_path: Path) -> None:
    from playwright.sync_api import expect

    _, summary = demo_store
    model, alias, champion = summary["model"], summary["alias"], summary["champion_version"]

    page.goto(f"{ui_url}/#/models")
    listed = page.get_by_role("row").filter(has=page.get_by_role("link", name=model, exact=True))
    expect(listed).to_be_visible()
    # The "Aliased versions" column: an alias chip (titled with the alias) pointing at the champion.
    expect(listed.get_by_title(alias, exact=True)).to_be_visible()
    expect(listed).to_contain_text(f"Version {champion}")
    _screenshot(page, "registered_models", tmp_path)

    page.goto(f"{ui_url}/#/models/{model}")
    expect(page.get_by_role("heading", name=model, exact=True)).to_be_visible()
    rows = {version: page.get_by_role("row").filter(has_text=f"Version {version}") for version in summary["versions"]}
    for version, row in rows.items():
        expect(row).to_be_visible()
        chip = row.get_by_title(alias, exact=True)  # the alias chip, not the `promotion` tag's text
        if version == champion:
            expect(chip).to_be_visible()
            expect(row).to_contain_text("verdict: passed")
        else:
            expect(chip).to_have_count(0)
            expect(row).to_contain_text("verdict: failed")
    _screenshot(page, "registered_model", tmp_path)
