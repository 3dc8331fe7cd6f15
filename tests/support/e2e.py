"""Helpers for end-to-end tests: a throwaway copy of this repository with a tiny config.

Each end-to-end test works in its own git+DVC repository under tmp_path, so it runs the real
commands (`python -m flows.pipeline`, `dvc repro`, a Prefect server) without touching this
checkout's outputs, MLflow store or DVC cache.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from components.config import REPO_ROOT, apply_overrides
from tests.support.mlflow_store import empty_store

BIN = Path(sys.executable).parent

# Small enough to run the whole pipeline in well under a minute of compute on 2 cores.
TINY_OVERRIDES = [
    "data.num_sft=200",
    "data.num_rl=400",
    "data.num_eval=40",
    "model.tiny.hidden_size=32",
    "model.tiny.num_hidden_layers=1",
    "model.tiny.intermediate_size=64",
    "sft.epochs=2",
    "rl.iterations=3",
    "rl.prompts_per_iteration=4",
    "rl.num_generations=4",
    "rl.checkpoint_every=2",
    "rl.log_every=1",
    "eval.num_samples=2",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                         check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line and (REPO_ROOT / line).is_file()]


def env_for(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(repo),
        "PREFECT_HOME": str(repo / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "DO_NOT_TRACK": "true",
        "DVC_NO_ANALYTICS": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    })
    for var in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PIPO_PARENT_RUN_ID", "PIPO_PRESET", "PIPO_FAULT"):
        env.pop(var, None)
    return env


def write_overrides(dest: Path, overrides: list[str]) -> None:
    """Apply overrides to the copy's params.yaml, or to its advanced.yaml for a key that file holds."""
    files = {name: yaml.safe_load((dest / name).read_text()) for name in ("params.yaml", "advanced.yaml")}
    for item in overrides:
        *sections, leaf = item.split("=", 1)[0].strip().split(".")
        node = files["advanced.yaml"]
        for part in sections:
            node = node.get(part) if isinstance(node, dict) else None
        apply_overrides(files["advanced.yaml" if isinstance(node, dict) and leaf in node else "params.yaml"], [item])
    for name, raw in files.items():
        (dest / name).write_text(yaml.safe_dump(raw, sort_keys=False))


def make_repo(dest: Path, overrides: list[str] = TINY_OVERRIDES, store: bool = True) -> Path:
    """Copy the repository's files to dest, apply overrides (write_overrides), git commit, set a DVC remote;
    with store, an empty MLflow store at mlflow/mlflow.db (tests/support/mlflow_store.py: empty_store)."""
    for rel in tracked_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target)
    write_overrides(dest, overrides)
    env = env_for(dest)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
                [str(BIN / "dvc"), "remote", "add", "--local", "-d", "local", str(dest.parent / "dvc-remote")]):
        subprocess.run(cmd, cwd=dest, env=env, check=True, capture_output=True)
    if store:
        empty_store(dest / "mlflow" / "mlflow.db")
    return dest


def run(cmd: list[str], repo: Path, timeout: float = 600, check: bool = True,
        env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(env_for(repo), **(env_extra or {}))
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}"
                             f"\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def mlflow_runs(repo: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("pipo")
    assert exp is not None, "experiment 'pipo' was not created"
    return client.search_runs([exp.experiment_id], max_results=1000)


def registered_versions(repo: Path, name: str = "pipo-policy") -> list:
    """Versions of the registered model in the test repo's store, oldest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    return sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))


def assert_all_exited(family: list, what: str = "one SIGTERM") -> None:
    """Wait for a process family (psutil processes) to exit; kill and name whatever is left, so a failing
    test never leaves servers behind."""
    import psutil

    _, left = psutil.wait_procs(family, timeout=15)
    for p in left:
        p.kill()
    assert left == [], f"left running after {what}: {[(p.pid, p.cmdline()) for p in left]}"
