"""Crash safety of the RL stage, with real processes killed by SIGKILL (the Prefect retry that
resumes a killed stage is checked by the first test of tests/e2e/test_pipeline.py).

One tiny workspace (a copy of this repo, prepared data and an SFT model) is shared by the tests.
Each RL run writes its own out and checkpoint folders; all log to the workspace's MLflow store.
"""

from __future__ import annotations

import signal

import pytest
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from tests.support.e2e import BIN, make_repo, mlflow_runs, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RL = ["rl.iterations=6", "rl.checkpoint_every=2", "rl.pipo.window=2", "rl.log_every=1"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("crash") / "repo")
    for stage in ("prepare", "sft"):
        run([str(BIN / "python"), "-m", "components.cli", stage], repo)
    return repo


def rl_stage(repo, name: str, fault: str | None = None, check: bool = True, once: bool = False):
    cmd = [str(BIN / "python"), "-m", "components.cli", "rl"]
    for item in RL + [f"rl.out_dir=models/{name}", f"rl.checkpoint_dir=checkpoints/{name}"]:
        cmd += ["--set", item]
    env = {"PIPO_TORCH_THREADS": "1"}
    if fault:
        env["PIPO_FAULT"] = fault
        if once:
            env["PIPO_FAULT_ONCE"] = str(repo / f".fault-{name}")
    return run(cmd, repo, check=check, env_extra=env)


def histories(repo, out_dir: str) -> list[dict[int, dict[str, float]]]:
    """Per-iteration metrics of each RL run that wrote to out_dir, oldest run first."""
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    runs = sorted((r for r in mlflow_runs(repo) if r.data.params.get("rl.out_dir") == out_dir
                   and r.data.tags.get("pipo.stage") == "rl"), key=lambda r: r.info.start_time)
    out = []
    for r in runs:
        steps: dict[int, dict[str, float]] = {}
        for key in r.data.metrics:
            if key.startswith("perf/") or key == "rl/seconds":
                continue  # wall times differ between any two runs
            for m in client.get_metric_history(r.info.run_id, key):
                steps.setdefault(m.step, {})[key] = m.value
        out.append(steps)
    return out


def stitched(parts: list[dict[int, dict[str, float]]], resumed_from: int) -> dict[int, dict[str, float]]:
    """The crashed run up to the checkpoint, then the resumed run."""
    first, second = parts
    return {**{s: m for s, m in first.items() if s < resumed_from}, **second}


def same_weights(repo, a: str, b: str) -> None:
    wa, wb = (load_file(str(repo / "models" / n / "model.safetensors")) for n in (a, b))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert (wa[key] == wb[key]).all(), f"{key} differs"


@pytest.fixture(scope="module")
def reference(workspace):
    rl_stage(workspace, "ref")
    [ref] = histories(workspace, "models/ref")
    assert sorted(ref) == list(range(7))  # iterations 0-5, and the guard's (on by default) final check at 6
    assert "guard/probe" in ref[0] and "guard/probe" in ref[6]
    return ref


def test_sigkill_mid_iteration_then_rerun_matches_an_uninterrupted_run(workspace, reference):
    killed = rl_stage(workspace, "mid", fault="rollout@3", check=False)
    assert killed.returncode == -signal.SIGKILL
    ckpt = workspace / "checkpoints" / "mid"
    [run_dir] = [p for p in ckpt.iterdir() if p.is_dir()]
    assert (run_dir / "latest").read_text().strip() == "iter-000002"

    resumed = rl_stage(workspace, "mid")
    assert "resumed from" in resumed.stdout + resumed.stderr
    parts = histories(workspace, "models/mid")
    assert len(parts) == 2 and min(parts[1]) == 2  # the rerun logged iterations 2.. only
    assert stitched(parts, 2) == reference  # every per-iteration metric, exactly
    same_weights(workspace, "ref", "mid")
    runs = [r for r in mlflow_runs(workspace) if r.data.params.get("rl.out_dir") == "models/mid"]
    tags = max(runs, key=lambda r: r.info.start_time).data.tags
    crashed = min(runs, key=lambda r: r.info.start_time)
    assert tags["rl.resumed_from_iteration"] == "2" and tags["rl.resumes_run_id"] == crashed.info.run_id


def test_sigkill_while_writing_a_checkpoint_leaves_no_complete_looking_one(workspace, reference):
    killed = rl_stage(workspace, "ckpt", fault="checkpoint@4", check=False)
    assert killed.returncode == -signal.SIGKILL
    [run_dir] = [p for p in (workspace / "checkpoints" / "ckpt").iterdir() if p.is_dir()]
    assert (run_dir / "latest").read_text().strip() == "iter-000002"
    assert not (run_dir / "iter-000004").exists()
    assert list(run_dir.glob(".iter-000004.tmp-*")), "the half-written folder should be a hidden temporary"

    resumed = rl_stage(workspace, "ckpt")
    out = resumed.stdout + resumed.stderr
    assert "never finished" in out and "resumed from" in out
    assert not list(run_dir.glob(".iter-*.tmp-*"))
    assert stitched(histories(workspace, "models/ckpt"), 2) == reference
    same_weights(workspace, "ref", "ckpt")


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(workspace, reference):
    rl_stage(workspace, "dmg", fault="rollout@5", check=False)  # checkpoints 2 and 4 written
    [run_dir] = [p for p in (workspace / "checkpoints" / "dmg").iterdir() if p.is_dir()]
    assert (run_dir / "latest").read_text().strip() == "iter-000004"
    (run_dir / "iter-000004" / "weights.safetensors").write_bytes(b"not a safetensors file")
    resumed = rl_stage(workspace, "dmg")
    out = resumed.stdout + resumed.stderr
    assert "falling back to the previous checkpoint" in out and "iter-000002" in out
    assert stitched(histories(workspace, "models/dmg"), 2) == reference
    same_weights(workspace, "ref", "dmg")


def test_a_checkpoint_of_another_config_is_refused_naming_the_difference(workspace, reference):
    from components.config import load_config
    from components.model.factory import load_policy
    from components.rl.checkpoint import CheckpointMismatchError, resume_candidates
    from components.rl.trainer import RLTrainer
    from accelerate import Accelerator
    import pandas as pd

    [run_dir] = [p for p in (workspace / "checkpoints" / "ref").iterdir() if p.is_dir()]
    # no checkpoint folder here, so no guard
    cfg = load_config(workspace / "params.yaml", RL + ["rl.lr=5e-4", "rl.guard.enabled=false"])
    model, tok = load_policy(workspace / "models" / "sft")
    prompts = pd.read_parquet(workspace / "data" / "prepared" / "rl.parquet")
    trainer = RLTrainer(model, tok, prompts, cfg.rl, cfg.seed, Accelerator(cpu=True), rollout=cfg.rollout,
                        reward=cfg.reward, model_cfg=cfg.model)
    assert resume_candidates(run_dir)
    with pytest.raises(CheckpointMismatchError, match="fingerprint"):
        trainer.resume(run_dir)
    trainer.close()


def test_the_rl_stage_under_two_processes_logs_one_run_and_resumes(workspace):
    """`accelerate launch` of the real stage (ddp.yaml, gloo): rank 0 alone talks to MLflow, and a
    rerun after a crash resumes with every rank's own state."""
    from tests.support.e2e import free_port

    def launch(fault=None):
        cmd = [str(BIN / "accelerate"), "launch", "--config_file", "configs/accelerate/ddp.yaml",
               "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(free_port()),
               "-m", "components.cli", "rl"]
        for item in RL + ["rl.out_dir=models/ddp", "rl.checkpoint_dir=checkpoints/ddp"]:
            cmd += ["--set", item]
        env = {"PIPO_TORCH_THREADS": "1", **({"PIPO_FAULT": fault} if fault else {})}
        return run(cmd, workspace, check=fault is None, env_extra=env)

    assert launch(fault="rollout@3").returncode != 0
    out = launch()
    assert "resumed from" in out.stdout + out.stderr
    runs = [r for r in mlflow_runs(workspace) if r.data.params.get("rl.out_dir") == "models/ddp"]
    assert len(runs) == 2  # the crashed attempt and the resumed one: one run each, not one per rank
    parts = histories(workspace, "models/ddp")
    assert sorted(stitched(parts, 2)) == list(range(7))  # and the guard's final check at 6
