"""The project's side of benchmarks/vs_trl.py, one run per process (main environment).

Builds components.rl.trainer.RLTrainer as the rl stage does (benchmarks/pipo_overhead.py does the
same) and runs its iterations: timed ones for the speed mode, or as many as a wall budget allows for
the accuracy mode, saving the policy at fractions of the budget. Started by vs_trl.py with --job.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vs_trl_common import BudgetClock, PartTimers, due_snapshots, worker_main  # noqa: E402


def build_trainer(job: dict[str, Any]):
    """The RLTrainer of the rl stage: the SFT policy, rendered prompts, the configured accelerator (on CPU)."""
    import pandas as pd
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from components.config import load_config
    from components.model.chat import rendered_frame
    from components.model.factory import load_policy, training_memory
    from components.rl.trainer import RLTrainer

    cfg = load_config(overrides=job["overrides"] + [f"rl.pipo.enabled={str(job['variant'] == 'pipo').lower()}",
                                                    f"seed={job['seed']}",
                                                    # as measured: PIPO's two steps, no guard (TRL has none)
                                                    "rl.pipo.joint=false", "rl.guard.enabled=false"])
    torch.set_num_threads(job["threads"])
    set_seed(cfg.seed)
    acc = Accelerator(cpu=True, mixed_precision=cfg.model.mixed_precision)
    model, tok = load_policy(job["policy"], cfg.model.dtype)
    prompts = rendered_frame(tok, pd.read_parquet(job["prompts"]), cfg.data.chat_template)
    return RLTrainer(training_memory(model, cfg.model), tok, prompts, cfg.rl, cfg.seed, acc, rollout=cfg.rollout,
                     reward=cfg.reward, model_cfg=cfg.model, model_path=job["policy"])


def time_parts(trainer) -> PartTimers:
    """Timers around the rollout engine, the loss forward of each micro-batch, and backward."""
    timers = PartTimers()
    timers.wrap(trainer.engine, "generate", "generate")
    timers.wrap(trainer.update, "loss", "loss_forward")
    timers.wrap(trainer.acc, "backward", "backward")
    return timers


def speed(trainer, job: dict[str, Any]) -> dict[str, Any]:
    """`warmup` untimed iterations, then `iterations` timed ones (wall time around trainer.iteration)."""
    timers = time_parts(trainer)
    out: dict[str, Any] = {"iter_seconds": [], "parts": {}, "pipo_active": [], "reward_mean": [], "mean_length": [],
                           "rollout_tokens_per_s": []}
    for it in range(job["warmup"] + job["iterations"]):
        timers.take()
        t0 = time.perf_counter()
        metrics = trainer.iteration(it)
        seconds = time.perf_counter() - t0
        parts = timers.take()
        if it < job["warmup"]:
            continue
        out["iter_seconds"].append(seconds)
        for name, value in parts.items():
            out["parts"].setdefault(name, []).append(value)
        out["pipo_active"].append(bool(metrics.get("pipo/active", 0.0)))
        out["reward_mean"].append(metrics["reward/mean"])
        out["mean_length"].append(metrics["completions/mean_length"])
        out["rollout_tokens_per_s"].append(metrics["perf/rollout_tokens_per_s"])
    return out


def save(trainer, folder: Path) -> None:
    from components.model.io import save_policy

    save_policy(trainer.acc.unwrap_model(trainer.model), trainer.tokenizer, folder)


def budget(trainer, job: dict[str, Any]) -> dict[str, Any]:
    """Iterations until the wall budget (from the first iteration's start) is spent; the policy is saved
    whenever a snapshot fraction of the budget has passed (saves are not counted) and at the end."""
    clock, out_dir, budget_s = BudgetClock(), Path(job["out_dir"]), job["budget_s"]
    snapshots, taken, it = [], set(), 0
    reward, length = [], []
    clock.start()
    while clock.elapsed() < budget_s:
        metrics = trainer.iteration(it)
        reward.append(metrics["reward/mean"])
        length.append(metrics["completions/mean_length"])
        it += 1
        due = due_snapshots(job["fractions"], budget_s, clock.elapsed(), taken)
        if due:  # several fractions passed in one iteration share one folder
            folder, elapsed = out_dir / f"iter-{it:05d}", clock.elapsed()
            clock.pause_while(lambda: save(trainer, folder))
            snapshots += [{"fraction": f, "elapsed_s": elapsed, "iterations": it, "folder": str(folder)} for f in due]
            taken.update(due)
    final = out_dir / "final"
    elapsed = clock.elapsed()
    save(trainer, final)
    snapshots.append({"fraction": 1.0, "elapsed_s": elapsed, "iterations": it, "folder": str(final)})
    return {"snapshots": snapshots, "iterations": it, "reward_mean": reward, "mean_length": length}


def run(job: dict[str, Any]) -> dict[str, Any]:
    import torch
    import transformers

    t0 = time.perf_counter()
    trainer = build_trainer(job)
    load_s = time.perf_counter() - t0
    try:
        result = speed(trainer, job) if job["mode"] == "speed" else budget(trainer, job)
    finally:
        trainer.close()
    result.update({"load_s": load_s, "torch_threads": torch.get_num_threads(),
                   "versions": {"torch": torch.__version__, "transformers": transformers.__version__}})
    return result


if __name__ == "__main__":
    worker_main(run)
