"""The MLflow UI that `make ui` serves (mlflow/ui.sh), used in headless Chromium as a person would.

A throwaway store (tests/support/ui_store.py: two pipeline runs, a registered model with verdict reports) is
served by the real mlflow/ui.sh on a free port. Each test starts on the landing page of a fresh browser
(no stored UI settings) and only clicks: to the experiment, which must open on its runs table (run names
that tell runs apart, a Dataset column), to the champion version, whose description must be its verdict
report, and to an RL run's plot in the artifact viewer. Screenshots go to tmp_path (and reports/ui/);
their paths are printed. Needs Chromium and playwright: scripts/install_browser.sh.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
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

from tests.support.e2e import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("PIPO_CHROMIUM", "/usr/bin/chromium"))
REPORT_DIR = ROOT / "reports" / "ui"
SERVER_DEADLINE_S = 60
RENDER_TIMEOUT_MS = 20_000
# First-visit popups (the assistant panel, the registry promo) cover the pages in screenshots; a
# returning user has dismissed them. Keys from MLflow 3.17's UI: if they change, the popups come
# back into the screenshots, while the checks (which read the DOM) still hold. Nothing else is stored:
# the UI's "GenAI / Machine learning" switch is left as a first visit finds it.
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
    proc = subprocess.run([sys.executable, "-m", "tests.support.ui_store", str(store)], cwd=work, env=env,
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
    """A fresh browser profile (no stored UI settings but the dismissed popups)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=RENDER_TIMEOUT_MS)  # the SPA's pages render after their API calls
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(RENDER_TIMEOUT_MS)
    script = "".join(f"localStorage.setItem({json.dumps(key)}, 'true');" for key in DISMISSED_POPUPS)
    context.add_init_script(script)
    page = context.new_page()
    yield page
    context.close()


def _screenshot(page, name: str, tmp_path: Path) -> Path:
    """Save to tmp_path (and a copy to reports/ui/, which git ignores); prints and returns the tmp_path one."""
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot))
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, REPORT_DIR / shot.name)
    print(f"screenshot: {shot}")
    return shot


def _expect_runs_table(page, experiment_id: str) -> None:
    """The experiment page shows its runs table, not the GenAI overview or traces it opens on otherwise."""
    from playwright.sync_api import expect

    expect(page).to_have_url(re.compile(rf"#/experiments/{experiment_id}/runs(\?|$)"))
    expect(page.get_by_role("columnheader", name="Run Name", exact=True).first).to_be_visible()
    expect(page.get_by_role("columnheader", name="Dataset", exact=True).first).to_be_visible()


def _column(page, header: str, row_id: str | None = None):
    """The runs table's cells under `header` (of one run: row_id, its run id). The grid splits each row
    into a pinned and a scrolling part; a cell carries its column's aria-colindex."""
    column = page.locator("[role=columnheader][aria-colindex]").filter(has=page.get_by_text(header, exact=True))
    index = column.get_attribute("aria-colindex")
    row = f'[role=row][row-id="{row_id}"]' if row_id else "[role=row][row-id]"
    return page.locator(f'{row} [role=gridcell][aria-colindex="{index}"]')


def _expand(page, parents: list[str]) -> None:
    """Open the nested stage runs under each pipeline (parent) run, by run id: its name's expand button."""
    for parent in parents:
        _column(page, "Run Name", row_id=parent).get_by_role("button").click()


def test_a_click_on_the_experiment_opens_its_runs_table(ui_url: str, demo_store: tuple[Path, dict], page,
                                                       tmp_path: Path) -> None:
    from playwright.sync_api import expect

    _, summary = demo_store
    experiment, experiment_id = summary["experiment"], summary["experiment_id"]
    page.goto(f"{ui_url}/")
    # From the landing page's list of recent experiments...
    recent = page.get_by_role("main").get_by_role("link", name=experiment, exact=True)
    expect(recent).to_be_visible()
    _screenshot(page, "landing", tmp_path)
    recent.click()
    _expect_runs_table(page, experiment_id)
    # ...and from the Experiments page.
    page.get_by_role("link", name="Experiments", exact=True).first.click()
    expect(page).to_have_url(re.compile(r"#/experiments/?(\?|$)"))
    page.get_by_role("main").get_by_role("link", name=experiment, exact=True).click()
    _expect_runs_table(page, experiment_id)

    _expand(page, summary["parents"])
    names = _column(page, "Run Name").get_by_role("link")  # the cell's other text is the run's colour
    expect(names).to_have_count(len(summary["runs"]))
    # Every run's name is its own (the stage, the algorithm where it matters, the DVC experiment), so
    # the table tells apart two pipeline runs' stages.
    shown = names.all_inner_texts()
    assert sorted(shown) == sorted(summary["runs"].values()), shown
    assert len(set(shown)) == len(shown), f"runs of the same name: {shown}"
    # The Dataset cell of each run that trained on a split names that split and its digest.
    for run_id, dataset in summary["datasets"].items():
        expect(_column(page, "Dataset", row_id=run_id)).to_contain_text(dataset)
    _screenshot(page, "experiment_runs", tmp_path)


def test_the_champion_versions_description_is_its_verdict_report(ui_url: str, demo_store: tuple[Path, dict], page,
                                                                 tmp_path: Path) -> None:
    from playwright.sync_api import expect

    _, summary = demo_store
    model, alias, champion = summary["model"], summary["alias"], summary["champion_version"]
    page.goto(f"{ui_url}/")
    page.get_by_role("link", name="Model registry", exact=True).click()
    page.get_by_role("link", name=model, exact=True).click()
    expect(page.get_by_role("heading", name=model, exact=True)).to_be_visible()
    # The version whose row carries the alias chip (titled with the alias; not the `promotion` tag's text).
    row = page.get_by_role("row").filter(has=page.get_by_title(alias, exact=True))
    expect(row).to_have_count(1)
    _screenshot(page, "registered_model", tmp_path)
    row.get_by_role("link", name=re.compile(r"^Version \d+$")).click()
    expect(page).to_have_url(re.compile(rf"#/models/{model}/versions/{champion}$"))
    # The description is the verdict report, rendered: its outcome, the gate's table and overall verdict.
    expect(page.get_by_text(f"{model} v{champion}: promoted to @{alias}", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name="PASS (min_gain +0.000)", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Gate PASSED: "))).to_be_visible()
    _screenshot(page, "champion_version", tmp_path)


def test_an_rl_runs_plot_opens_in_the_artifact_viewer(ui_url: str, demo_store: tuple[Path, dict], page,
                                                      tmp_path: Path) -> None:
    from playwright.sync_api import expect

    _, summary = demo_store
    plot = summary["plot"]
    page.goto(f"{ui_url}/")
    page.get_by_role("link", name="Experiments", exact=True).first.click()
    page.get_by_role("main").get_by_role("link", name=summary["experiment"], exact=True).click()
    _expand(page, summary["parents"])
    _column(page, "Run Name", row_id=plot["run_id"]).get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/runs/{plot['run_id']}"))
    # The run sits under the experiment's runs, not under GenAI "Evaluations".
    expect(page.locator(".du-bois-light-breadcrumb")).to_contain_text("Runs")
    page.get_by_role("tab", name="Artifacts", exact=True).click()
    folder, file = plot["path"].split("/")
    page.get_by_text(folder, exact=True).click()
    page.get_by_text(file, exact=True).click()
    image = page.locator(f'img[alt="{plot["path"]}"]')
    expect(image).to_be_visible()
    width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert width > 100 and height > 100, (width, height)  # a decoded PNG, not a broken-image icon
    _screenshot(page, "rl_plot", tmp_path)
