"""The project's RL loop against Hugging Face TRL's GRPOTrainer, side by side, from the same SFT policy.

Sides: `project_grpo` (RLTrainer, rl.pipo.enabled=false), `project_pipo` (GRPO+PIPO) and `trl_grpo`
(TRL 1.16 GRPOTrainer, run with .venv-trl's python). Every run is its own process, one at a time,
started from the same SFT folder on the same prompts (data/prepared/rl.parquet, rendered as the rl
stage renders them), with params.yaml's rl settings (plus --set) mapped onto GRPOConfig
(`trl_settings`): the algorithm record's `trl` settings (GRPO's: loss_type "grpo", the per-sequence
token mean, then mean over sequences, and token-level importance sampling; an algorithm whose record
names none is refused), scale_rewards "group", beta, epsilon/epsilon_high, num_generations, a
generation batch of prompts_per_iteration x num_generations = per_device_train_batch_size x
gradient_accumulation_steps with one optimizer step per generation batch (num_iterations 1), a
constant lr with no warmup, AdamW with torch's default betas/eps and the project's weight decay,
max_grad_norm, temperature, top_p 1.0 (no top-k), fp32 on the CPU, no saving, no truncation of prompts,
the same mask_truncated_completions. Both sides stop a completion at the tokenizer's EOS and the
model's end-of-turn ids. TRL's reward is the project's verifier (the scoring pool, score_batch).

Modes (--mode, default all three):
  speed       --rounds rounds of (project_grpo, project_pipo, trl_grpo), each run --warmup untimed then
              --iterations timed iterations with --threads torch threads; median s/iteration, IQR, and
              medians of generate / loss forward / backward per iteration
  contention  the same with a single-threaded matmul loop busy on another core; slowdown = loaded/quiet
  accuracy    per seed, each side trains for --budget-s wall seconds (from its first iteration; model
              load excluded); the project also saves its policy at 1/4 and 1/2 of the budget. Every
              policy and the SFT start are scored by the same evaluator in this process (greedy pass@1
              on the eval split, components.eval.run.evaluate_folder)

Mismatches that remain (also in the JSON, vs_trl_common.MISMATCHES): how each side samples (generate
vs the project's decode loop, different RNG streams), the prompt order, the advantage's std epsilon
(1e-4 vs 1e-6), pi_old (TRL: detached current log-probs; project: the sampler's), micro-batching by
rows vs by tokens, TRL's LM head scoring prompt positions on CPU, the project skipping zero-advantage
rows (rl.skip_zero_advantage; same update), each side's own metric bookkeeping. Removed: TRL 1.16
tokenizes plain-text prompts with add_special_tokens=True (a second BOS); the TRL side tokenizes as
the project does (add_special_tokens=False, left padding).

The time to accuracy: the first snapshot (1/4, 1/2, all of the budget) at which the project's mean
pass@1 over seeds reaches TRL's at the full budget, for the variant params.yaml enables (rl.pipo).
The defaults take about half an hour on 2 cores (`make bench-trl`).

  make trl-env && .venv/bin/python benchmarks/vs_trl.py --json reports/bench/vs_trl.json
  .venv/bin/python benchmarks/vs_trl.py --smoke --json /tmp/vs_trl.json      # minutes, for the test
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from vs_trl_common import ADJUSTMENTS, MISMATCHES, SNAPSHOT_FRACTIONS, read_json, spread, write_json  # noqa: E402
from vs_trl_report import markdown  # noqa: E402

SIDES = ("project_grpo", "project_pipo", "trl_grpo")
BEFORE_SIDES = ("project_grpo_before", "project_pipo_before")  # --baseline: the same sides on earlier code
BUSY_LOOP = ("import torch; torch.set_num_threads(1); a = torch.randn(256, 256); a @ a; print('busy', flush=True)\n"
             "while True: a @ a")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", default="models/sft", help="SFT folder both sides start from")
    p.add_argument("--prompts", default="data/prepared/rl.parquet")
    p.add_argument("--eval-data", default="data/prepared/eval.parquet")
    p.add_argument("--trl-python", default=str(ROOT / ".venv-trl" / "bin" / "python"))
    p.add_argument("--mode", nargs="+", choices=("speed", "contention", "accuracy"),
                   default=["speed", "contention", "accuracy"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iterations", type=int, default=25)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch threads of every run")
    p.add_argument("--budget-s", type=float, default=77.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eval-limit", type=int, default=None, help="score only the first N eval prompts")
    p.add_argument("--trl-micro-batch", type=int, default=128,
                   help="TRL per_device_train_batch_size (gradient_accumulation_steps makes up the batch)")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="params override, as the CLI's")
    p.add_argument("--smoke", action="store_true", help="2 iterations, 1 round, 5 s budget, 1 seed, 16 eval prompts")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--baseline", default=None,
                   help="a checkout of an earlier commit: its project sides run too (speed and contention modes), "
                        "as project_grpo_before / project_pipo_before, with this version's worker scripts")
    p.add_argument("--work-dir", default=None, help="keep the runs' jobs, logs and saved policies here "
                                                    "(default: a temporary folder, removed at the end)")
    args = p.parse_args()
    if args.smoke:
        args.rounds, args.iterations, args.warmup, args.budget_s = 1, 2, 0, 5.0
        args.seeds, args.eval_limit = args.seeds[:1], 16
    return args


def check_comparable(cfg) -> None:
    """Refuse settings that GRPOConfig cannot mirror (the mapping in trl_settings would be wrong)."""
    rl, batch = cfg.rl, cfg.rl.prompts_per_iteration * cfg.rl.num_generations
    problems = [msg for bad, msg in (
        (rl.record.trl is None, f"rl.algorithm is {rl.algorithm!r}; its record names no TRL equivalent (trl)"),
        (rl.ppo_epochs != 1, "rl.ppo_epochs must be 1 (one pass over each batch)"),
        (rl.mini_batch_size < batch, f"rl.mini_batch_size must be >= {batch}: one optimizer step per iteration"),
        (cfg.rollout.engine != "hf", "rollout.engine must be hf (both sides sample with the policy module)"),
        (cfg.model.lora.enabled, "model.lora.enabled must be false"),
        (cfg.model.mixed_precision != "no" or cfg.model.dtype != "float32", "fp32 only (model.dtype, mixed_precision)"),
    ) if bad]
    if problems:
        raise SystemExit("vs_trl: settings TRL cannot mirror here:\n  " + "\n  ".join(problems))


def trl_settings(cfg, seed: int, micro_batch: int) -> dict[str, Any]:
    """GRPOConfig keyword arguments that mirror the project's rl settings (see the module docstring)."""
    import torch

    rl, batch = cfg.rl, cfg.rl.prompts_per_iteration * cfg.rl.num_generations
    used = rl.effective  # the clip range and std scaling the project trains with (published or explicit)
    if batch % micro_batch:
        raise SystemExit(f"vs_trl: --trl-micro-batch {micro_batch} does not divide the batch of {batch} sequences")
    adamw = torch.optim.AdamW([torch.zeros(1, requires_grad=True)]).defaults  # what the project's optimizer uses
    return dict(
        # activation_checkpointing: transformers 5.24's name for TRL's gradient_checkpointing (TRL defaults it on)
        seed=seed, use_cpu=True, bf16=False, fp16=False, activation_checkpointing=cfg.model.gradient_checkpointing,
        per_device_train_batch_size=micro_batch, gradient_accumulation_steps=batch // micro_batch,
        num_generations=rl.num_generations, num_iterations=1, **rl.record.trl,
        scale_rewards="group" if used.scale_rewards else "none", beta=rl.beta, use_bias_correction_kl=False,
        epsilon=used.epsilon, epsilon_high=used.epsilon_high,
        learning_rate=rl.lr, lr_scheduler_type="constant", warmup_steps=0, optim="adamw_torch",
        adam_beta1=adamw["betas"][0], adam_beta2=adamw["betas"][1], adam_epsilon=adamw["eps"],
        weight_decay=rl.weight_decay, max_grad_norm=rl.max_grad_norm,
        temperature=rl.temperature, top_p=rl.top_p, top_k=0, min_p=None, repetition_penalty=1.0,
        max_completion_length=rl.max_completion_length, mask_truncated_completions=rl.mask_truncated_completions,
        shuffle_dataset=True, report_to="none", save_strategy="no", logging_strategy="steps", logging_steps=1,
        disable_tqdm=True, dataloader_num_workers=0, log_completions=False, remove_unused_columns=False,
    )


class Runs:
    """Starts each run as its own process, one at a time, and reads back its result."""

    def __init__(self, args: argparse.Namespace, cfg, work: Path):
        self.args, self.cfg, self.work, self.count = args, cfg, work, 0
        self.sides = SIDES + (BEFORE_SIDES if args.baseline else ())
        self.baseline = Path(args.baseline).resolve() if args.baseline else None
        if self.baseline is not None:  # the earlier code, run by this version's worker
            for name in ("vs_trl_project.py", "vs_trl_common.py"):
                (self.baseline / "benchmarks" / name).write_text((HERE / name).read_text())
        self.env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **os.environ,
                    "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
        self.trl_prompts = work / "rl_rendered.parquet"
        self.trl_results: list[dict[str, Any]] = []

    def run(self, side: str, seed: int, mode: str) -> dict[str, Any]:
        self.count += 1
        tag = f"{self.count:03d}-{side}-{mode}-seed{seed}"
        a = self.args
        job: dict[str, Any] = {"policy": str(Path(a.policy).resolve()), "seed": seed, "threads": a.threads,
                               "mode": mode, "warmup": a.warmup, "iterations": a.iterations, "budget_s": a.budget_s,
                               "fractions": list(SNAPSHOT_FRACTIONS), "out_dir": str(self.work / tag),
                               "result": str(self.work / f"{tag}.result.json")}
        if side == "trl_grpo":
            job.update(prompts=str(self.trl_prompts), reward=self.cfg.reward.model_dump(),
                       settings=trl_settings(self.cfg, seed, a.trl_micro_batch))
            argv = [a.trl_python, str(HERE / "vs_trl_trl.py")]
        else:
            job.update(prompts=str(Path(a.prompts).resolve()), overrides=a.overrides, variant=side.split("_")[1])
            argv = [sys.executable, str(HERE / "vs_trl_project.py")]
        cwd = ROOT
        if side.endswith("_before"):
            argv, cwd = [sys.executable, str(self.baseline / "benchmarks" / "vs_trl_project.py")], self.baseline
        job_path = self.work / f"{tag}.job.json"
        write_json(job_path, job)
        log = self.work / f"{tag}.log"
        print(f"vs_trl: {tag}", flush=True)
        with log.open("w") as out:
            rc = subprocess.run(argv + ["--job", str(job_path)], cwd=cwd, env=self.env, stdout=out,
                                stderr=subprocess.STDOUT).returncode
        if rc != 0:
            tail = "\n".join(log.read_text().splitlines()[-40:])
            raise SystemExit(f"vs_trl: run {tag} failed (exit {rc}); last lines of {log}:\n{tail}")
        result = read_json(job["result"])
        if side == "trl_grpo":
            self.trl_results.append(result)
        return result


@contextmanager
def busy_core() -> Iterator[None]:
    """One process spinning single-threaded torch matmuls for the duration (stopped by its pid after)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], env=env, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()  # spinning from here on
        yield
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def work_dir(keep: str | None) -> Iterator[Path]:
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="vs_trl-") as tmp:
        yield Path(tmp)


def speed(runs: Runs, rounds: int, seed: int) -> dict[str, Any]:
    """Rounds of every side in turn; per side, the summary of all timed iterations."""
    raw: dict[str, list[dict[str, Any]]] = {side: [] for side in runs.sides}
    for r in range(rounds):
        for side in runs.sides:
            raw[side].append(runs.run(side, seed + r, "speed"))
    return {side: summarise_speed(results) for side, results in raw.items()}


def summarise_speed(results: list[dict[str, Any]]) -> dict[str, Any]:
    iters = [s for r in results for s in r["iter_seconds"]]
    parts = {name: [v for r in results for v in r["parts"][name]] for name in results[0]["parts"]}
    other = [s - sum(p[i] for p in parts.values()) for i, s in enumerate(iters)]
    out = {"s_per_iter": spread(iters), "parts_median_s": {k: spread(v)["median"] for k, v in parts.items()},
           "other_median_s": spread(other)["median"], "round_medians": [spread(r["iter_seconds"])["median"]
                                                                       for r in results],
           "load_s": spread([r["load_s"] for r in results])["median"],
           "peak_rss_mb": max(r["peak_rss_mb"] for r in results), "torch_threads": results[0]["torch_threads"],
           # the same work on both sides? (same policy, same sampling settings: similar rewards and lengths)
           "reward_mean": spread([v for r in results for v in r["reward_mean"]])["median"],
           "completion_length_mean": spread([v for r in results for v in r["mean_length"]])["median"]}
    if "pipo_active" in results[0]:
        active = [s for r in results for s, on in zip(r["iter_seconds"], r["pipo_active"]) if on]
        out["pipo_active_s_per_iter"] = spread(active)
    return out


def accuracy(runs: Runs, args: argparse.Namespace, cfg, sides: tuple[str, ...]) -> dict[str, Any]:
    """Train every side for the budget per seed, then score every saved policy with one evaluator."""
    trained = {side: {seed: runs.run(side, seed, "budget") for seed in args.seeds} for side in sides}
    scores = evaluate_all(cfg, args, [s["folder"] for by_seed in trained.values() for r in by_seed.values()
                                      for s in r["snapshots"]])
    # {side: {seed: {fraction: pass@1, mean@k, elapsed_s, iterations}}}
    per_seed = {side: {str(seed): {str(s["fraction"]): {**scores[s["folder"]], "elapsed_s": s["elapsed_s"],
                                                        "iterations": s["iterations"]} for s in r["snapshots"]}
                       for seed, r in by_seed.items()} for side, by_seed in trained.items()}
    mean = {side: {f: _mean([snaps[f]["pass@1"] for snaps in by_seed.values()]) for f in _fractions(by_seed)}
            for side, by_seed in per_seed.items()}
    target = mean["trl_grpo"]["1.0"]
    reach = {side: time_to_reach(m, target, args.budget_s) for side, m in mean.items() if side != "trl_grpo"}
    default = "project_pipo" if cfg.rl.pipo.enabled else "project_grpo"  # the pipeline's own setting
    return {"budget_s": args.budget_s, "seeds": args.seeds,
            "sft_pass@1": scores[str(Path(args.policy).resolve())]["pass@1"],
            "pass@1": {side: {seed: snaps["1.0"]["pass@1"] for seed, snaps in d.items()} for side, d in per_seed.items()},
            "per_seed": per_seed, "mean_pass@1": mean, "trl_mean_pass@1_at_budget": target,
            "time_to_trl_accuracy_s": reach, "project_side": default, "project_time_to_trl_accuracy_s": reach[default],
            "project_time_to_trl_accuracy_ratio": None if reach[default] is None else reach[default] / args.budget_s}


def time_to_reach(mean_by_fraction: dict[str, float], target: float, budget_s: float) -> float | None:
    """The first snapshot time (its fraction of the budget, in seconds) whose mean pass@1 reaches target."""
    return next((float(f) * budget_s for f in sorted(mean_by_fraction, key=float) if mean_by_fraction[f] >= target),
                None)


def _fractions(by_seed: dict[str, dict[str, Any]]) -> list[str]:
    return sorted({f for snaps in by_seed.values() for f in snaps}, key=float)


def evaluate_all(cfg, args: argparse.Namespace, folders: list[str]) -> dict[str, dict[str, float]]:
    """{folder: pass@1 (greedy) and mean@k} on the eval split, the SFT start included, one evaluator."""
    import pandas as pd

    from components.eval.run import evaluate_folder
    from components.reward.pool import pool_for

    data = pd.read_parquet(args.eval_data)
    data = data.head(args.eval_limit) if args.eval_limit else data
    out = {}
    with pool_for(cfg.reward) as scorer:
        for folder in [str(Path(args.policy).resolve()), *dict.fromkeys(folders)]:
            summary, _ = evaluate_folder(folder, cfg, {"eval": data}, Path(folder).name, scorer)["eval"]
            out[folder] = {k: float(v) for k, v in summary.items() if k.startswith(("pass@", "mean@"))}
    return out


def machine(runs: Runs) -> dict[str, Any]:
    import accelerate
    import torch
    import transformers

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout if _has("lscpu") else ""
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), "")
    trl_versions = runs.trl_results[0]["versions"] if runs.trl_results else {}
    return {"processor": platform.processor(), "cpu_model": model, "cpu_count": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)), "platform": platform.platform(),
            "python": platform.python_version(), "main_env": {"torch": torch.__version__, "transformers":
                                                              transformers.__version__, "accelerate": accelerate.__version__},
            "trl_env": trl_versions}


def settings(cfg, args: argparse.Namespace, runs: Runs) -> dict[str, Any]:
    rl = cfg.rl
    return {"project_rl": rl.model_dump(include={"algorithm", "prompts_per_iteration", "num_generations", "lr", "beta",
                                                 "epsilon", "epsilon_high", "temperature", "top_p",
                                                 "max_completion_length", "ppo_epochs", "mini_batch_size",
                                                 "max_tokens_per_micro_batch", "max_grad_norm", "weight_decay",
                                                 "scale_rewards", "mask_truncated_completions", "log_entropy",
                                                 "skip_zero_advantage"}),
            "project_rl_effective": rl.effective.model_dump(), "pipo": rl.pipo.model_dump(), "overrides": args.overrides,
            "trl_grpo_config": runs.trl_results[0]["grpo_config"] if runs.trl_results else None,
            "threads": args.threads, "rounds": args.rounds, "warmup": args.warmup, "iterations": args.iterations,
            "budget_s": args.budget_s, "seeds": args.seeds, "eval_limit": args.eval_limit, "smoke": args.smoke,
            "policy": args.policy, "prompts": args.prompts, "eval_data": args.eval_data}


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """The top-level numbers: median s/iteration per side and the ratios to TRL."""
    sp = report.get("speed")
    if not sp:
        return {}
    med = {side: sp[side]["s_per_iter"]["median"] for side in SIDES}
    return {"project_grpo_s_per_iter": med["project_grpo"], "project_pipo_s_per_iter": med["project_pipo"],
            "trl_grpo_s_per_iter": med["trl_grpo"], "ratio_project_trl": med["project_grpo"] / med["trl_grpo"],
            "ratio_pipo_trl": med["project_pipo"] / med["trl_grpo"],
            "iqr_s_per_iter": {side: [sp[side]["s_per_iter"]["p25"], sp[side]["s_per_iter"]["p75"]] for side in SIDES},
            "parts_median_s": {side: sp[side]["parts_median_s"] for side in sp},
            **({"project_grpo_before_s_per_iter": sp["project_grpo_before"]["s_per_iter"]["median"],
                "project_pipo_before_s_per_iter": sp["project_pipo_before"]["s_per_iter"]["median"],
                "speedup_grpo_vs_before": sp["project_grpo_before"]["s_per_iter"]["median"] / med["project_grpo"],
                "speedup_pipo_vs_before": sp["project_pipo_before"]["s_per_iter"]["median"] / med["project_pipo"]}
               if "project_grpo_before" in sp else {})}


def contention(runs: Runs, args: argparse.Namespace, quiet: dict[str, Any]) -> dict[str, Any]:
    with busy_core():
        loaded = speed(runs, args.rounds, runs.cfg.seed)
    slow = {side: loaded[side]["s_per_iter"]["median"] / quiet[side]["s_per_iter"]["median"] for side in runs.sides}
    return {"loaded": loaded, "slowdown": slow, "ratio_of_slowdowns": slow["project_grpo"] / slow["trl_grpo"],
            "ratio_of_slowdowns_pipo": slow["project_pipo"] / slow["trl_grpo"]}


def main() -> None:
    args = parse_args()
    from components.config import load_config
    from components.infra.runtime import quiet_environment
    from components.model.chat import rendered_frame
    from components.model.factory import load_tokenizer

    import pandas as pd
    import torch
    from transformers.utils import logging as hf_logging

    quiet_environment()
    hf_logging.disable_progress_bar()  # the evaluator loads a dozen policies
    torch.set_num_threads(args.threads)
    cfg = load_config(overrides=args.overrides)
    check_comparable(cfg)
    if not Path(args.trl_python).exists():
        raise SystemExit(f"vs_trl: {args.trl_python} not found: build it with `make trl-env`")
    report: dict[str, Any] = {}
    with work_dir(args.work_dir) as work:
        runs = Runs(args, cfg, work)
        frame = rendered_frame(load_tokenizer(args.policy), pd.read_parquet(args.prompts), cfg.data.chat_template)
        frame[["prompt", "answer", "source"]].to_parquet(runs.trl_prompts, index=False)
        if "speed" in args.mode or "contention" in args.mode:
            report["speed"] = speed(runs, args.rounds, cfg.seed)
        if "contention" in args.mode:
            report["contention"] = contention(runs, args, report["speed"])
        if "accuracy" in args.mode:
            report["accuracy"] = accuracy(runs, args, cfg, SIDES)
        report = {**headline(report), **report, "machine": machine(runs), "settings": settings(cfg, args, runs),
                  "mismatches": MISMATCHES, "adjustments": ADJUSTMENTS}
    print(markdown(report))
    if args.json:
        write_json(args.json, _finite(report))
        print(f"vs_trl: wrote {args.json}")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _has(cmd: str) -> bool:
    from shutil import which

    return which(cmd) is not None


def _finite(value: Any) -> Any:
    """The report with NaN and infinities as null: strict JSON readers refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    main()
