"""End to end through a real Prefect server: `prefect deployment run 'pipo-pipeline/local'`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flows.local_server import wait_for_url, wait_healthy
from tests.e2e_support import BIN, env_for, free_port, make_repo, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """One Prefect server for the module's flows (each flow would otherwise start a temporary one)."""
    home = tmp_path_factory.mktemp("prefect")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = env_for(home) | {"PREFECT_HOME": str(home / ".prefect"), "PREFECT_API_URL": api}
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=home, env=env, stdout=open(home / "server.log", "wb"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(api, deadline_s=180, proc=server)
        yield api
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def test_deployment_run_on_local_server_runs_the_pipeline(tmp_path, prefect_api):
    repo = make_repo(tmp_path / "repo")
    api = prefect_api
    env = env_for(repo) | {"PREFECT_API_URL": api}
    served = None
    try:
        served = subprocess.Popen([sys.executable, "-m", "flows.serve"], cwd=repo, env=env,
                                  stdout=open(tmp_path / "serve.log", "wb"), stderr=subprocess.STDOUT)
        # serve() registers the deployment asynchronously: wait until the API knows it
        wait_for_url(f"{api}/deployments/name/pipo-pipeline/local", proc=served)
        proc = subprocess.run([str(BIN / "prefect"), "deployment", "run", "pipo-pipeline/local", "--watch",
                               "--watch-timeout", "600"], cwd=repo, env=env, capture_output=True, text=True,
                              timeout=700)
        log = (tmp_path / "serve.log").read_text(errors="replace")
        assert proc.returncode == 0, proc.stdout + proc.stderr + log[-5000:]
        assert "Completed" in proc.stdout
        metrics = json.loads((repo / "metrics" / "eval.json").read_text())
        assert set(metrics) == {"untrained", "sft", "rl"}
        assert "Running stage 'rl'" in log and "Running stage 'verify'" in log
    finally:
        if served is not None:
            served.terminate()
            try:
                served.wait(timeout=30)
            except subprocess.TimeoutExpired:
                served.kill()


def test_failed_stage_fails_the_flow_and_leaves_no_output(tmp_path, prefect_api):
    repo = make_repo(tmp_path / "repo", ["data.source=verl", "data.files=[missing/train.parquet]"])
    proc = run([str(BIN / "python"), "-m", "flows.pipeline"], repo, check=False,
               env_extra={"PREFECT_API_URL": prefect_api})
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "missing/train.parquet" in out and "stage 'prepare' failed" in out
    assert not (repo / "data" / "prepared").exists()
    assert not (repo / "models" / "init").exists() and not (repo / "models" / "sft").exists()
