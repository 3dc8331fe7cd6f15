"""What both sides of benchmarks/vs_trl.py share: the job/result files, per-part timers, the budget
clock, and the settings that could not be matched. Standard library only: it is imported in the main
environment and in .venv-trl alike."""

from __future__ import annotations

import functools
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

PARTS = ("generate", "loss_forward", "backward")
SNAPSHOT_FRACTIONS = (0.25, 0.5, 1.0)  # of the accuracy budget; 1.0 is the final policy

# Differences between the two sides that the benchmark cannot remove without rewriting one of them.
MISMATCHES = [
    "sampling: TRL samples with transformers' generate (dynamic KV cache, logits-processor pipeline, torch's "
    "global RNG seeded once by set_seed); the project samples with its own decode loop (static KV cache, a "
    "torch.Generator seeded per iteration). Same distribution (temperature, top_p 1.0, no top-k), different draws",
    "prompt order: TRL's RepeatSampler shuffles the prompts with its seed, the project's PromptSampler with its "
    "own: the same distribution of prompts, not the same prompts per iteration",
    "advantage: both divide by the unbiased group std, plus 1e-4 in TRL and 1e-6 in the project (0/1 rewards: "
    "a group std is 0 or at least 0.35, so the difference is under 0.03 %)",
    "pi_old: with one optimizer step per generation batch TRL takes the detached current log-probs (ratio "
    "exactly 1); the project takes the sampler's log-probs, from the same fp32 weights (ratio 1 up to the "
    "rounding between the KV-cache decode and the full forward)",
    "micro-batches: the project cuts the 256 rows by a token budget (rl.max_tokens_per_micro_batch, rows "
    "grouped by length); TRL by row count (per_device_train_batch_size x gradient_accumulation_steps). Both "
    "accumulate exactly to the same per-sequence-mean-then-mean loss over the 256 rows",
    "log-probs: TRL 1.16 scores them with its fused chunked LM head, which on a CPU (no Triton) projects every "
    "position, prompt included; the project projects the completion positions only. An implementation "
    "difference, part of what is measured",
    "zero-advantage rows: with rl.skip_zero_advantage (beta 0) the project skips the forward/backward of rows whose "
    "advantage is 0, whose gradient is 0 (the loss's normaliser still counts them, so the update is the same); "
    "TRL runs every row. An implementation difference, part of what is measured",
    "per-iteration bookkeeping: each side logs its own metrics (TRL gathers and logs them after the step "
    "callback, outside the timed step; the project inside its iteration)",
]

# What the benchmark changes in TRL so that a difference goes away.
ADJUSTMENTS = [
    "prompt tokenization: TRL 1.16 tokenizes plain-text prompts with the tokenizer's default "
    "add_special_tokens=True, which puts a second BOS before the rendered prompt (it already carries its BOS); "
    "the benchmark's GRPOTrainer subclass tokenizes them with add_special_tokens=False, as the project does",
]


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def worker_main(run: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """`python WORKER --job JOB.json`: run the job, write its result where the job says."""
    if len(sys.argv) != 3 or sys.argv[1] != "--job":
        raise SystemExit(f"usage: {sys.argv[0]} --job JOB.json")
    job = read_json(sys.argv[2])
    result = run(job)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_json(job["result"], result)


class PartTimers:
    """Seconds spent in a few wrapped callables, summed per iteration (take() reads and resets)."""

    def __init__(self) -> None:
        self.spent = {name: 0.0 for name in PARTS}

    def wrap(self, owner: Any, attr: str, part: str) -> None:
        """Replace owner.attr (on the instance only) by a timed call of the original."""
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.spent[part] += time.perf_counter() - t0

        setattr(owner, attr, timed)

    def take(self) -> dict[str, float]:
        out, self.spent = self.spent, {name: 0.0 for name in PARTS}
        return out


class BudgetClock:
    """Training seconds since start(), with paused stretches (snapshot saves) left out."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.paused = 0.0

    def start(self) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.perf_counter() - self.started - self.paused

    def pause_while(self, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.paused += time.perf_counter() - t0


def due_snapshots(fractions: list[float], budget_s: float, elapsed: float, taken: set[float]) -> list[float]:
    """The snapshot fractions (below 1.0) whose time has come and that were not taken yet."""
    return [f for f in fractions if f < 1.0 and f not in taken and elapsed >= f * budget_s]


def spread(values: list[float]) -> dict[str, float]:
    """Median and interquartile range (25th-75th percentile) of a sample."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return {"median": math.nan, "p25": math.nan, "p75": math.nan, "n": 0}
    if len(vals) == 1:
        return {"median": vals[0], "p25": vals[0], "p75": vals[0], "n": 1}
    q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    return {"median": statistics.median(vals), "p25": q1, "p75": q3, "n": len(vals)}
