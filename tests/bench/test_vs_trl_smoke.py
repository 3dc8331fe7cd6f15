"""benchmarks/vs_trl.py end to end with both sides: the project's trainer (this environment) and TRL's
GRPOTrainer (.venv-trl, `make trl-env`), in every mode, on a tiny untrained policy and a few prompts so
it needs neither `make run` nor much time. Run by `make test-trl` (part of `make test`), not by the
main pytest run (pyproject's addopts ignore tests/bench)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.rl import sums

ROOT = Path(__file__).resolve().parents[2]
TRL_PYTHON = ROOT / ".venv-trl" / "bin" / "python"
TINY_MODEL = ["model.tiny.hidden_size=32", "model.tiny.num_hidden_layers=1", "model.tiny.intermediate_size=64"]
# A smaller batch than params.yaml's, mirrored on the TRL side (8 prompts x 4 = one micro-batch of 32).
SMALL = ["rl.prompts_per_iteration=8", "rl.num_generations=4", "rl.max_completion_length=12",
         "eval.max_completion_length=12"]
SIDES = ("project_grpo", "project_pipo", "trl_grpo")
EVAL_LIMIT = 16  # --smoke scores the first 16 eval prompts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[dict, Path]:
    """The report, and the work folder with every run's raw result (kept by --work-dir)."""
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
            "--eval-data", str(root / "eval.parquet"), "--trl-micro-batch", "16", "--json", str(root / "vs_trl.json"),
            "--work-dir", str(root / "work")]
    argv += [a for s in SMALL for a in ("--set", s)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| TRL 1.16 GRPO |" in done.stdout  # the markdown table
    return json.loads((root / "vs_trl.json").read_text()), root / "work"


@pytest.fixture(scope="module")
def report(bench) -> dict:
    return bench[0]


def raw_runs(work: Path, mode: str) -> dict[str, list[dict]]:
    """side -> the raw results of its runs in `mode`, in the order they ran (files NNN-side-mode-seedS)."""
    runs: dict[str, list[dict]] = {}
    for path in sorted(work.glob(f"*-{mode}-seed*.result.json")):
        runs.setdefault(path.name.split("-")[1], []).append(json.loads(path.read_text()))
    return runs


def test_speed_is_the_median_of_the_iterations_the_runs_timed(bench):
    """--smoke: one quiet round of 2 timed iterations per side, then one loaded round (contention)."""
    report, work = bench
    runs = raw_runs(work, "speed")
    assert sorted(runs) == sorted(SIDES) and all(len(r) == 2 for r in runs.values())  # quiet, then loaded
    for side in SIDES:
        quiet, loaded = runs[side]
        iters, parts = quiet["iter_seconds"], quiet["parts"]
        assert len(iters) == 2 and all(len(v) == 2 for v in parts.values())
        summary = report["speed"][side]
        assert summary["s_per_iter"]["n"] == 2
        assert summary["s_per_iter"]["median"] == pytest.approx(statistics.median(iters))
        low, high = report["iqr_s_per_iter"][side]
        assert min(iters) <= low <= summary["s_per_iter"]["median"] <= high <= max(iters)
        # the timed parts happen inside the iteration: never more than its wall time
        for i, seconds in enumerate(iters):
            assert 0 <= sum(v[i] for v in parts.values()) <= seconds * (1 + 1e-6), (side, i)
        assert summary["parts_median_s"] == pytest.approx({k: statistics.median(v) for k, v in parts.items()})
        assert summary["other_median_s"] == pytest.approx(
            statistics.median([s - sum(v[i] for v in parts.values()) for i, s in enumerate(iters)]))
        assert report["contention"]["loaded"][side]["s_per_iter"]["median"] == pytest.approx(
            statistics.median(loaded["iter_seconds"]))
        assert report["contention"]["slowdown"][side] == pytest.approx(
            statistics.median(loaded["iter_seconds"]) / statistics.median(iters))
    med = {side: report["speed"][side]["s_per_iter"]["median"] for side in SIDES}
    assert report["project_grpo_s_per_iter"] == med["project_grpo"] and report["trl_grpo_s_per_iter"] == med["trl_grpo"]
    assert report["ratio_project_trl"] == pytest.approx(med["project_grpo"] / med["trl_grpo"])
    assert report["ratio_pipo_trl"] == pytest.approx(med["project_pipo"] / med["trl_grpo"])
    slow = report["contention"]["slowdown"]
    assert report["contention"]["ratio_of_slowdowns"] == pytest.approx(slow["project_grpo"] / slow["trl_grpo"])
    # The untrained policy earns no reward, so the project may skip the rows' forward/backward
    # (rl.skip_zero_advantage); TRL always runs them.
    assert all(report["parts_median_s"]["trl_grpo"][p] > 0 for p in ("loss_forward", "backward"))


def test_budget_runs_train_for_the_budget_and_snapshot_in_order(bench):
    report, work = bench
    budget = report["accuracy"]["budget_s"]
    runs = raw_runs(work, "budget")
    assert sorted(runs) == sorted(SIDES)
    for side, (run,) in runs.items():
        snaps = run["snapshots"]
        assert [s["fraction"] for s in snaps] == ([1.0] if side == "trl_grpo" else [0.25, 0.5, 1.0])
        assert snaps[-1]["elapsed_s"] >= budget and snaps[-1]["iterations"] == run["iterations"] >= 1
        assert all(a["elapsed_s"] <= b["elapsed_s"] and a["iterations"] <= b["iterations"]
                   for a, b in zip(snaps, snaps[1:]))
        for s in snaps[:-1]:  # taken once that fraction of the budget had passed
            assert s["elapsed_s"] >= s["fraction"] * budget
        recorded = report["accuracy"]["per_seed"][side]["0"]
        assert {f: (r["elapsed_s"], r["iterations"]) for f, r in recorded.items()} == {
            str(s["fraction"]): (s["elapsed_s"], s["iterations"]) for s in snaps}


def test_pass_at_1_is_the_mean_of_the_per_problem_greedy_scores(bench):
    """Rescore the SFT start and each side's final policy on the same 16 prompts: the report's pass@1 is the
    share of them answered correctly (greedy decoding is deterministic)."""
    import pandas as pd

    from components.config import load_config
    from components.eval.run import evaluate_folder
    from components.reward.pool import pool_for

    report, work = bench
    acc = report["accuracy"]
    cfg = load_config(overrides=SMALL)
    data = pd.read_parquet(work.parent / "eval.parquet").head(EVAL_LIMIT)
    finals = {side: run["snapshots"][-1]["folder"] for side, (run,) in raw_runs(work, "budget").items()}
    with pool_for(cfg.reward) as scorer:
        def greedy_mean(folder: str) -> float:
            _, table = evaluate_folder(folder, cfg, {"eval": data}, "rescore", scorer)["eval"]
            assert len(table) == EVAL_LIMIT
            return float(table["greedy_correct"].astype(float).mean())

        assert acc["sft_pass@1"] == pytest.approx(greedy_mean(str(work.parent / "policy")))
        for side, folder in finals.items():
            assert acc["pass@1"][side] == {"0": pytest.approx(greedy_mean(folder))}, side
    for side in SIDES:
        for fraction, snap in acc["per_seed"][side]["0"].items():
            assert 0.0 <= snap["pass@1"] <= 1.0 and (snap["pass@1"] * EVAL_LIMIT).is_integer(), (side, fraction)
            assert acc["mean_pass@1"][side][fraction] == pytest.approx(snap["pass@1"])  # one seed: its value
    assert acc["trl_mean_pass@1_at_budget"] == acc["mean_pass@1"]["trl_grpo"]["1.0"]
    assert set(acc["per_seed"]["project_grpo"]["0"]) == {"0.25", "0.5", "1.0"}  # snapshots at 1/4, 1/2, the end


def test_trl_ran_with_the_projects_settings(report):
    """Each GRPOConfig field TRL reports equals the project setting it mirrors (benchmarks/vs_trl.py trl_settings)."""
    trl, rl = report["settings"]["trl_grpo_config"], report["settings"]["project_rl"]
    used = report["settings"]["project_rl_effective"]
    batch = rl["prompts_per_iteration"] * rl["num_generations"]
    assert (trl["num_generations"], trl["generation_batch_size"]) == (rl["num_generations"], batch)
    assert trl["per_device_train_batch_size"] * trl["gradient_accumulation_steps"] == batch  # one step per batch
    assert trl["num_iterations"] == rl["ppo_epochs"] == 1
    assert (trl["epsilon"], trl["epsilon_high"]) == (used["epsilon"], used["epsilon_high"])
    assert trl["scale_rewards"] == ("group" if used["scale_rewards"] else "none")
    assert trl["loss_type"] == used["algorithm"] == "grpo"
    for theirs, ours in (("beta", "beta"), ("learning_rate", "lr"), ("weight_decay", "weight_decay"),
                         ("max_grad_norm", "max_grad_norm"), ("temperature", "temperature"), ("top_p", "top_p"),
                         ("max_completion_length", "max_completion_length"),
                         ("mask_truncated_completions", "mask_truncated_completions")):
        assert trl[theirs] == rl[ours], theirs
    assert (rl["prompts_per_iteration"], rl["num_generations"], rl["max_completion_length"]) == (8, 4, 12)  # SMALL
    assert trl["lr_scheduler_type"] == "constant" and trl["warmup_steps"] == 0
    assert not trl["bf16"] and not trl["activation_checkpointing"] and trl["use_cpu"]
    assert report["machine"]["trl_env"]["trl"] == "1.16.0"
    assert report["mismatches"] and report["adjustments"]
