"""benchmarks/vs_trl.py end to end with both sides: the project's trainer (this environment) and TRL's
GRPOTrainer (.venv-trl, `make trl-env`), in every mode, on a tiny untrained policy and a few prompts so
it needs neither `make run` nor much time. Run by `make test-trl` (part of `make test`), not by the
main pytest run (pyproject's addopts ignore tests/bench)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.rl_support import sums

ROOT = Path(__file__).resolve().parents[2]
TRL_PYTHON = ROOT / ".venv-trl" / "bin" / "python"
TINY_MODEL = ["model.tiny.hidden_size=32", "model.tiny.num_hidden_layers=1", "model.tiny.intermediate_size=64"]
# A smaller batch than params.yaml's, mirrored on the TRL side (8 prompts x 4 = one micro-batch of 32).
SMALL = ["rl.prompts_per_iteration=8", "rl.num_generations=4", "rl.max_completion_length=12",
         "eval.max_completion_length=12"]
SIDES = ("project_grpo", "project_pipo", "trl_grpo")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    from components.config import load_config
    from components.model.factory import initial_policy
    from components.model.io import save_policy

    assert TRL_PYTHON.exists(), f"{TRL_PYTHON} is missing: build it with `make trl-env`"
    root = tmp_path_factory.mktemp("vs_trl")
    model, tok = initial_policy(load_config(overrides=TINY_MODEL).model, 0)
    save_policy(model, tok, root / "policy")
    sums(400, 1).to_parquet(root / "rl.parquet", index=False)
    sums(32, 2).to_parquet(root / "eval.parquet", index=False)
    argv = [sys.executable, str(ROOT / "benchmarks" / "vs_trl.py"), "--smoke", "--threads", "1",
            "--trl-python", str(TRL_PYTHON), "--policy", str(root / "policy"), "--prompts", str(root / "rl.parquet"),
            "--eval-data", str(root / "eval.parquet"), "--trl-micro-batch", "16", "--json", str(root / "vs_trl.json")]
    argv += [a for s in SMALL for a in ("--set", s)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| TRL 1.16 GRPO |" in done.stdout  # the markdown table
    return json.loads((root / "vs_trl.json").read_text())


def positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_speed_numbers_are_positive_and_finite(report):
    for key in ("project_grpo_s_per_iter", "project_pipo_s_per_iter", "trl_grpo_s_per_iter", "ratio_project_trl",
                "ratio_pipo_trl"):
        assert positive(report[key]), key
    for side in SIDES:
        low, high = report["iqr_s_per_iter"][side]
        assert 0 < low <= high
        parts = report["parts_median_s"][side]
        assert positive(parts["generate"])
        # The untrained policy earns no reward, so every advantage is 0 and the project may skip the rows'
        # forward/backward (rl.skip_zero_advantage); TRL always runs them.
        assert all(math.isfinite(parts[p]) and parts[p] >= 0 for p in ("loss_forward", "backward"))
        assert report["speed"][side]["s_per_iter"]["n"] == 2  # --smoke: 1 round of 2 timed iterations
    assert all(positive(report["parts_median_s"]["trl_grpo"][p]) for p in ("loss_forward", "backward"))


def test_contention_slowdowns(report):
    cont = report["contention"]
    assert all(positive(cont["slowdown"][side]) for side in SIDES)
    assert positive(cont["ratio_of_slowdowns"])


def test_pass_at_1_of_every_side_and_seed(report):
    acc = report["accuracy"]
    assert 0.0 <= acc["sft_pass@1"] <= 1.0
    for side in SIDES:
        assert list(acc["pass@1"][side]) == ["0"]  # --smoke: one seed
        assert all(0.0 <= v <= 1.0 for v in acc["pass@1"][side].values())
    assert set(acc["per_seed"]["project_grpo"]["0"]) == {"0.25", "0.5", "1.0"}  # snapshots at 1/4, 1/2, the end
    assert "project_time_to_trl_accuracy_s" in acc and "project_time_to_trl_accuracy_ratio" in acc


def test_trl_ran_with_the_mirrored_settings(report):
    trl = report["settings"]["trl_grpo_config"]
    assert trl["loss_type"] == "grpo" and trl["scale_rewards"] == "group" and trl["beta"] == 0.0
    assert (trl["epsilon"], trl["epsilon_high"]) == (0.2, 0.2)  # GRPO's published clip, as the project uses it
    assert trl["generation_batch_size"] == 32 and trl["num_generations"] == 4 and trl["num_iterations"] == 1
    assert trl["per_device_train_batch_size"] * trl["gradient_accumulation_steps"] == 32  # one step per batch
    assert trl["max_completion_length"] == 12 and trl["lr_scheduler_type"] == "constant"
    assert not trl["bf16"] and not trl["activation_checkpointing"] and trl["use_cpu"]
    assert report["machine"]["trl_env"]["trl"] == "1.16.0"
    assert report["mismatches"] and report["adjustments"]
