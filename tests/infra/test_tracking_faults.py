"""Tracking faults: a tracking server that dies mid-run, and stage processes that die or are stopped.

Before: MLflow's default HTTP retries (7, backoff 2) stalled each log call about 4 minutes on a dead
server, and a killed stage left its run RUNNING forever.
"""

import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from components.config import ConfigError, load_config
from components.infra.tracking import log_metrics, stage_run
from tests.support.mlflow_store import empty_store

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HTTP_ENV = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
BOUND_S = 15.0


@pytest.fixture(autouse=True)
def _restore_mlflow_env(monkeypatch):
    for key in HTTP_ENV:  # stage_run sets them from params; put the process's values back afterwards
        monkeypatch.delenv(key, raising=False)
    yield
    while mlflow.active_run():
        mlflow.end_run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on a free local port, in its own process group; yields (url, process)."""
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240  # ~40 s cold on a 2-core machine
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after 240 s:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.25)  # poll interval, not a wait for readiness
        yield url, proc
    finally:
        _kill_group(proc)
        log.close()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _http_cfg(url: str):
    return load_config(overrides=[f"tracking.tracking_uri={url}", "tracking.experiment=faults",
                                  "tracking.request_timeout_s=2", "tracking.max_retries=2",
                                  "tracking.backoff_factor=1"])


@pytest.mark.e2e  # starts a real `mlflow server`
@pytest.mark.slow
def test_dead_tracking_server_fails_a_log_call_within_the_bound(mlflow_server):
    url, server = mlflow_server
    cfg = _http_cfg(url)
    timings: dict[str, float] = {}
    with pytest.raises(Exception) as raised:
        with stage_run(cfg, "rl"):
            log_metrics({"train/reward": 0.5}, step=0)  # the server is up: logged
            _kill_group(server)  # the server dies mid-run
            start = time.monotonic()
            try:
                log_metrics({"train/reward": 0.6}, step=1)
            except Exception as exc:
                timings["log"] = time.monotonic() - start
                failure = exc
                raise
            pytest.fail("a log call to a dead server succeeded")
        timings["exit"] = time.monotonic() - start
    timings.setdefault("exit", time.monotonic() - start)
    print(f"log call failed after {timings['log']:.1f} s; stage_run left {timings['exit']:.1f} s after the kill")
    assert raised.value is failure  # the stage's own error, not one from ending the run on a dead server
    assert "127.0.0.1" in str(failure)
    assert timings["log"] < BOUND_S
    assert timings["exit"] < 3 * BOUND_S  # the log call, then the bounded attempts to mark the run FAILED
    assert mlflow.active_run() is None  # popped even though the store could not be told
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2" and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "2"


def test_tracking_bounds_are_validated_params():
    cfg = load_config()
    assert cfg.tracking.max_retries <= 3 and cfg.tracking.request_timeout_s <= 30
    with pytest.raises(ConfigError, match="tracking.max_retries"):
        load_config(overrides=["tracking.max_retries=11"])  # MLflow refuses more than 10
    with pytest.raises(ConfigError, match="tracking.request_timeout_s"):
        load_config(overrides=["tracking.request_timeout_s=0"])


def _sqlite_cfg(tmp_path: Path):
    return load_config(overrides=[f"tracking.tracking_uri={empty_store(tmp_path / 'mlflow.db')}",
                                  "tracking.experiment=faults"])


def _client(tmp_path: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_exception_marks_the_run_failed_and_ctrl_c_killed(tmp_path):
    cfg = _sqlite_cfg(tmp_path)
    with pytest.raises(RuntimeError, match="rollout exploded"):
        with stage_run(cfg, "sft") as failed:
            raise RuntimeError("rollout exploded")
    with pytest.raises(KeyboardInterrupt):
        with stage_run(cfg, "sft") as interrupted:
            raise KeyboardInterrupt
    with stage_run(cfg, "sft") as finished:
        log_metrics({"sft/loss": 1.0})
    client = _client(tmp_path)
    failed_run = client.get_run(failed.info.run_id)
    assert failed_run.info.status == "FAILED"
    assert failed_run.data.tags["pipo.end_reason"] == "RuntimeError: rollout exploded"
    assert client.get_run(interrupted.info.run_id).info.status == "KILLED"
    assert client.get_run(finished.info.run_id).info.status == "FINISHED"
    assert failed_run.data.tags["pipo.pid"] == str(os.getpid()) and failed_run.data.tags["pipo.host"]


STAGE_SCRIPT = textwrap.dedent("""
    import sys, time
    from components.config import load_config
    from components.infra.tracking import log_metrics, stage_run

    cfg = load_config(overrides=[f"tracking.tracking_uri=sqlite:///{sys.argv[1]}", "tracking.experiment=faults"])
    with stage_run(cfg, "rl") as run:
        log_metrics({"train/reward": 0.5}, step=0)
        print(run.info.run_id, flush=True)
        time.sleep(600)
""")


def _start_stage(tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", STAGE_SCRIPT, str(tmp_path / "mlflow.db")], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _run_id(proc: subprocess.Popen, timeout_s: float = 180) -> str:
    """The run id the stage prints once its run is open (a deadline, not a blind sleep)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline().strip() if ready else ""
    if not line:
        proc.kill()
        pytest.fail(f"stage process did not open its run: {proc.communicate()[1][-3000:]}")
    return line


@pytest.mark.slow
def test_sigkilled_stage_is_marked_killed_by_the_next_start_and_sigterm_marks_killed(tmp_path):
    cfg = _sqlite_cfg(tmp_path)
    # the sqlite store is created once, here, so the two stage processes do not race to migrate it
    with stage_run(cfg, "prepare"):
        pass
    dead, alive = _start_stage(tmp_path), _start_stage(tmp_path)
    try:
        dead_run, alive_run = _run_id(dead), _run_id(alive)
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=30)
        client = _client(tmp_path)
        assert client.get_run(dead_run).info.status == "RUNNING"  # nobody could tell the store

        with stage_run(cfg, "rl") as next_run:  # the next start of the same stage cleans up
            pass
        stale = client.get_run(dead_run)
        assert stale.info.status == "KILLED" and stale.info.end_time is not None
        assert f"process {dead.pid}" in stale.data.tags["pipo.end_reason"]
        assert client.get_run(alive_run).info.status == "RUNNING"  # a live process is left alone
        assert client.get_run(next_run.info.run_id).info.status == "FINISHED"

        alive.send_signal(signal.SIGTERM)  # stopped (Prefect cancel, timeout, kill): KILLED on the way out
        assert alive.wait(timeout=60) == 128 + signal.SIGTERM
        stopped = client.get_run(alive_run)
        assert stopped.info.status == "KILLED" and stopped.data.tags["pipo.end_reason"] == "SIGTERM"
    finally:
        for proc in (dead, alive):
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
