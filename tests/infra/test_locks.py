"""One writer per stage output and one registration per model, between real processes.

The failures this guards against: two `python -m components.cli verify` at once registered the same
model twice (same sha256, both tagged promoted), and two `rl` at once both exited 0 writing the same
outputs; DVC's lock covers `dvc repro` only. The verify processes here are held at a gate (their
first registry look-up waits for a file) so that the race is certain, not a matter of timing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from components.config import REPO_ROOT
from components.infra.locks import LockHeldError, file_lock
from tests.support.provenance import NAME, OVERRIDES, evaluated, pipeline  # noqa: F401

GATED_CLI = """
import os, sys, time
from pathlib import Path
import components.registry.versions as versions
real, gate = versions.find_version, Path(os.environ["PIPO_TEST_GATE"])
def gated(*args, **kwargs):
    Path(f"{gate}.{os.getpid()}").touch()
    end = time.time() + 120
    while not gate.exists() and time.time() < end:
        time.sleep(0.02)
    return real(*args, **kwargs)
versions.find_version = gated
from components.cli import main
sys.exit(main(sys.argv[1:]))
"""
HOLDER = """
import sys, time
from pathlib import Path
from components.infra.locks import file_lock
with file_lock(Path(sys.argv[1]), "test"):
    print("held", flush=True)
    time.sleep(120)
"""


def verify_cmd(*extra: str) -> list[str]:
    return ["verify", *[a for o in OVERRIDES for a in ("--set", o)], *extra]


def env(root: Path, gate: Path) -> dict[str, str]:
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", PYTHONPATH=str(REPO_ROOT),
                PIPO_TEST_GATE=str(gate))


@pytest.fixture()
def project(pipeline):  # noqa: F811
    """The evaluated state as a project of its own (a params.yaml in the working directory), so the
    stages may replace outputs there."""
    root, cfg = pipeline
    shutil.copy2(REPO_ROOT / "params.yaml", root / "params.yaml")
    return root, cfg


def gated_verify(root: Path, gate: Path, name: str, *extra: str) -> subprocess.Popen:
    log = (gate.parent / f"{name}.log").open("w")
    return subprocess.Popen([sys.executable, "-c", GATED_CLI, *verify_cmd(*extra)], cwd=root, env=env(root, gate),
                            stdout=log, stderr=subprocess.STDOUT)


def wait_at_gate(gate: Path, count: int, procs: list[subprocess.Popen]) -> None:
    end = time.time() + 150
    while len(list(gate.parent.glob(f"{gate.name}.*"))) < count:
        assert time.time() < end, "the verify processes never reached the gate"
        assert all(p.poll() is None for p in procs), "a verify process exited before the gate"
        time.sleep(0.1)


def versions(root: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return client.search_model_versions(f"name = '{NAME}'")


def test_concurrent_verifies_one_refused_at_once_the_others_register_one_version(project, tmp_path):
    """a and b (other output paths) verify the same model at once: both find no version at the gate,
    one registers it and the other reuses it. c, with a's outputs, is refused while a runs."""
    root, cfg = project
    gate = tmp_path / "gate"
    procs = [gated_verify(root, gate, "a"),
             gated_verify(root, gate, "b", "--set", "verify.out_dir=reports/verify_b",
                          "--set", "verify.metrics_file=metrics/verify_b.json")]
    try:
        wait_at_gate(gate, 2, procs)  # both hold their outputs' locks and looked for a version in vain
        c = subprocess.run([sys.executable, "-m", "components.cli", *verify_cmd()], cwd=root,
                           env=env(root, gate), capture_output=True, text=True, timeout=120)
        gate.touch()
        codes = [p.wait(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    errors = [line for line in c.stderr.splitlines() if line.startswith("error:")]
    assert c.returncode == 2 and len(errors) == 1, c.stderr[-3000:]
    assert "stage 'verify'" in errors[0] and f"pid {procs[0].pid}" in errors[0]
    assert any(str((root / out).resolve()) in errors[0] for out in (cfg.verify.out_dir, cfg.verify.metrics_file))
    assert codes == [0, 0], [(tmp_path / f"{n}.log").read_text()[-2000:] for n in "ab"]
    found = versions(root)
    assert len(found) == 1, [(v.version, v.tags.get("model_hash")) for v in found]


def test_a_lock_dies_with_its_holder_even_by_sigkill(tmp_path):
    lock = tmp_path / ".out.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeldError, match=f"pid {holder.pid}"):
            with file_lock(lock, "test"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with file_lock(lock, "test"):  # no stale lock to clear by hand
        pass
