"""Two gloo processes launched with the repo's DDP accelerate config: ranks agree after every
iteration, and a data-parallel update equals the single-process update on the same global batch."""

import json
import subprocess

import pytest

from tests.support.e2e import BIN, REPO_ROOT, free_port

CONFIGS = ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3")


@pytest.mark.slow
def test_two_processes_agree_every_iteration_and_match_one_process(tmp_path):
    # configs/accelerate/ddp.yaml is MULTI_GPU; without CUDA the same launch runs gloo on CPU
    # (accelerate's --cpu flag alone would start a single process unless MPI is installed).
    cmd = [str(BIN / "accelerate"), "launch", "--config_file", str(REPO_ROOT / "configs/accelerate/ddp.yaml"),
           "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(free_port()),
           str(REPO_ROOT / "tests" / "support" / "dist_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["mean"] == r1["mean"] == 5 / 8
    assert r0["history"] == r1["history"]  # same mu_t, xi, phi, losses on both ranks, every iteration
    assert [h["pipo/active"] for h in r0["history"]] == [0.0, 0.0, 1.0, 1.0]
    assert len(r0["checksums"]) == 4 and r0["checksums"] == r1["checksums"]  # identical weights each iteration
    # all-reduced gradients of the two shards == the gradient of the whole batch in one process
    assert r0["grad_scale"] > 1e-4
    assert r0["grad_gap"] < 1e-6 * max(1.0, r0["grad_scale"]), r0
    assert r0["weight_gap"] < 1e-5, r0
    # token-mean (DAPO) with unequal token counts per rank: the global denominator makes them equal too
    assert r0["dapo_loss_tokens"] != r1["dapo_loss_tokens"]
    assert r0["dapo_grad_scale"] > 1e-4
    assert r0["dapo_grad_gap"] < 1e-6 * max(1.0, r0["dapo_grad_scale"]), r0
    assert r0["idle_grad_scale"] > 1e-4
    assert r0["idle_grad_gap"] < 1e-6 * max(1.0, r0["idle_grad_scale"]), r0
    # stopped after 2 iterations and resumed on both ranks: the same 4 iterations, the same weights
    for r in (r0, r1):
        assert r["resumed_from"] == 2
        assert r["resumed_history"] == r["history"] and r["resumed_checksum"] == r["checksum"]  # Adam divides by sqrt(v): 2.8e-7 measured, a wrong update moves ~lr=1e-4
    # rl.guard: only rank 0's probe prompts collapse at 2; both ranks roll back, the output is the start
    assert r0["guard_history"] == r1["guard_history"] and r0["guard_checksum"] == r1["guard_checksum"]
    assert [h.get("guard/rollbacks") for h in r0["guard_history"]] == [0.0, None, 1.0, None]
    assert r0["guard_output"] == r1["guard_output"] and r0["guard_output"]["best_iteration"] == 0


@pytest.mark.parametrize("name", CONFIGS)
def test_accelerate_config_files_are_valid(name):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(REPO_ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    expected = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED"}
    assert cfg.distributed_type.value == expected[name]
    if name.startswith("deepspeed"):
        assert cfg.deepspeed_config["zero_stage"] == int(name[-1])
    if name == "fsdp":
        assert cfg.fsdp_config["fsdp_version"] == 2 and cfg.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
