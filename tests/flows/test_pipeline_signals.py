"""Stopping the Prefect flow: one SIGTERM stops the stage at once, leaves no process behind and puts the
stage's previous outputs back; a flow killed outright is marked KILLED by the next one.

The failure this guards against: SIGTERM to `python -m flows.pipeline` took ~30 s, orphaned the
ephemeral Prefect API server, and left reports/eval and metrics/eval.json deleted (dvc removes a
stage's outputs before running it) with a `.eval.tmp-*` folder beside them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.support.e2e import BIN, assert_all_exited, env_for, make_repo, run
from tests.support.mlflow_store import empty_store

# A stand-in for the evaluate stage with the same outputs: it publishes reports/eval atomically,
# and while its temporary folder exists it says so (file `started`, its pid) and waits for `go`.
TOY_STAGE = """
import os, time
from pathlib import Path
from components.infra.atomic_io import atomic_dir, atomic_write_json
version = Path("version.txt").read_text().strip()
with atomic_dir("reports/eval") as tmp:
    (tmp / "result.txt").write_text(version)
    Path("started").write_text(str(os.getpid()))
    deadline = time.time() + 120
    while not Path("go").exists() and time.time() < deadline:
        time.sleep(0.05)
atomic_write_json("metrics/eval.json", {"untrained": {"toy": {"pass_at_1": float(version)}}})
"""


def poll(condition, deadline_s: float, what: str, proc: subprocess.Popen | None = None):
    end = time.time() + deadline_s
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {what}")
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {deadline_s:.0f}s: {what}")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture()
def toy_repo(tmp_path):
    """A copy of the repository whose only stage is the toy `evaluate`, run and committed once (version 1)."""
    repo = make_repo(tmp_path / "repo", overrides=[])
    (repo / "toy_stage.py").write_text(TOY_STAGE)
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["stages"]["evaluate"].update(cmd="python toy_stage.py", deps=["version.txt", "toy_stage.py"])
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    (repo / "version.txt").write_text("1")
    (repo / "go").touch()
    run([str(BIN / "dvc"), "repro", "--single-item", "evaluate"], repo, timeout=120)
    (repo / "go").unlink()
    (repo / "started").unlink()
    (repo / "version.txt").write_text("2")  # the flow's run is a new version, stopped midway
    return repo


def test_one_sigterm_stops_the_flow_its_stage_and_server_and_restores_outputs(toy_repo):
    repo = toy_repo
    log = repo.parent / "flow.log"  # not a pipe: an orphaned child holding it open would block reading it
    flow = subprocess.Popen([sys.executable, "-m", "flows.pipeline", "evaluate"], cwd=repo, env=env_for(repo),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        stage_pid = int(poll(lambda: (repo / "started").exists() and (repo / "started").read_text(), 150,
                             "the flow started the stage", flow))
        family = psutil.Process(flow.pid).children(recursive=True)
        server = [p for p in family if "uvicorn" in " ".join(p.cmdline())]
        assert server, "the flow runs no ephemeral Prefect server: the test would not check it"
        assert not (repo / "reports" / "eval").exists(), "dvc did not delete the output: nothing to restore"
        flow.send_signal(signal.SIGTERM)
        code = flow.wait(timeout=30)
        output = log.read_text()
    finally:
        if flow.poll() is None:
            flow.kill()
    assert_all_exited(family)
    assert code == 128 + signal.SIGTERM, output[-3000:]
    assert not alive(stage_pid)
    assert (repo / "reports" / "eval" / "result.txt").read_text() == "1"
    assert json.loads((repo / "metrics" / "eval.json").read_text())["untrained"]["toy"]["pass_at_1"] == 1.0
    leftovers = [p.name for p in (repo / "reports").iterdir() if p.name.startswith(".eval.")
                 and not p.name.endswith(".lock")]
    assert leftovers == []


def test_the_next_flow_marks_a_killed_flows_parent_run_killed(tmp_path, monkeypatch):
    from components.config import load_config
    from components.infra.tracking import PID_TAG, ensure_experiment, process_tags
    from flows.pipeline import parent_run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", empty_store(tmp_path / "mlflow.db"))
    monkeypatch.delenv("PIPO_PARENT_RUN_ID", raising=False)
    cfg = load_config()
    experiment_id = ensure_experiment(cfg)  # points MLflow at this test's store (an earlier test set another)
    client = MlflowClient()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = client.create_run(experiment_id, run_name="pipeline",
                              tags={"pipo.stage": "pipeline", **process_tags(), PID_TAG: str(dead.pid)})
    with parent_run(cfg) as run:
        assert run.data.tags[PID_TAG] == str(os.getpid())
    assert client.get_run(stale.info.run_id).info.status == "KILLED"
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
