"""The verified-improvement guard (rl.guard; docs/guard.md): RL never ends worse than it verified.

Every rl.guard.every iterations, at the start of iteration t, the held-out probe (components/rl/probe.py)
scores the policy pi_theta_t. Against the best verified checkpoint so far (the run's start is the first):

  change  D = mean over probe prompts of (score_now - score_best), paired: the same prompts both times
  se      its paired standard error (components/rl/collectives.py: paired_change)

  D < -drop_se * se         -> rollback: restore the best checkpoint, lr x lr_decay (after max_rollbacks
                               rollbacks, a further drop stops the run instead)
  mean_now > mean_best      -> save: this policy is the new best verified checkpoint
  otherwise                 -> keep: train on

At the run's end a last check scores the final policy. The output (rl.guard.output) is the final policy
when that check shows no drop (`last_verified`: the later policy is as good as the best within the
probe's noise, and has trained longer), else the best checkpoint; `best` always outputs the best. The
best is the highest probe seen, so it is biased upward: picking it over an equally good later policy
cost pass@1 in the sweep (docs/results/pipo-controls.md).

The inputs are sums over every process (`total`), so every rank takes the same decision. This module
decides and keeps the guard's state; the trainer writes and restores the checkpoints it names.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import torch

from components.rl.collectives import Sums, paired_change

log = logging.getLogger(__name__)

SAVE, KEEP, ROLLBACK, STOP = "save", "keep", "rollback", "stop"
NEEDS = ("rl.guard (on by default) keeps its best checkpoint in the checkpoint folder and restores full weights "
         "in each process, so it needs a checkpoint folder and one process or DDP, not FSDP/DeepSpeed: set "
         "rl.guard.enabled=false for this run")


def decide(change: float, se: float, now: float, best: float, drop_se: float, rollbacks: int,
           max_rollbacks: int) -> str:
    """The guard's action for a probe `now` (mean score) against the best `best`: their paired change
    and its standard error, the rollbacks taken so far. A change of exactly -drop_se * se keeps."""
    if change < -drop_se * se:
        return ROLLBACK if rollbacks < max_rollbacks else STOP
    return SAVE if now > best else KEEP


@dataclass
class Verdict:
    action: str
    iteration: int
    metrics: dict[str, float]


class Guard:
    """The guard's state (best iteration and its per-prompt scores, rollbacks, stopped), its decision, and
    the calls it makes on the trainer at a check (`at`) and at the run's end (`output`)."""

    def __init__(self, cfg, lr: float, total: Sums = lambda xs: xs, *,
                 score: Callable[[int], torch.Tensor] = lambda it: torch.zeros(0),
                 save: Callable[[int], None] = lambda it: None,
                 restore: Callable[..., None] = lambda it, weights_only=False: None,
                 stop: Callable[[int], None] = lambda it: None,
                 log_metrics: Callable[[dict[str, float], int], None] = lambda m, s: None):
        """cfg: rl.guard. lr: rl.lr, decayed by lr_decay at every rollback. total: a sum over processes.
        score(it): this process's per-prompt probe scores of the current policy. save(it): write the best
        checkpoint. restore(it, weights_only): load the best checkpoint written at `it` (its weights alone,
        or with the optimizer, PIPO and probe state). stop(it): write the regular checkpoint of a stopped run."""
        self.cfg, self.base_lr, self.total = cfg, lr, total
        self.score, self.save, self.restore, self.stop, self.log_metrics = score, save, restore, stop, log_metrics
        self.best_iteration: int | None = None
        self.best_scores: torch.Tensor | None = None  # this process's share of the probe prompts
        self.best_probe = float("nan")
        self.rollbacks = 0
        self.stopped_at: int | None = None  # the iteration a drop past max_rollbacks stopped the run
        self.final_probe = float("nan")  # the final policy's probe at the run's end
        self.final_dropped = False  # the final check found a drop (then the output is the best)

    def due(self, it: int) -> bool:
        return it % self.cfg.every == 0

    @property
    def stopped(self) -> bool:
        return self.stopped_at is not None

    @property
    def lr(self) -> float:
        """The lr the updates use now: rl.lr x lr_decay^rollbacks (exactly rl.lr before any rollback)."""
        return self.base_lr * self.cfg.lr_decay ** self.rollbacks if self.rollbacks else self.base_lr

    def check(self, it: int, scores: torch.Tensor, final: bool = False) -> Verdict:
        """Judge the policy at iteration `it` by its per-prompt probe scores and update the state.
        final: the end of the run, nothing left to retry: a drop only keeps the best."""
        n, s = self.total([float(scores.numel()), float(scores.double().sum())])
        now = s / max(n, 1.0)
        change, se = 0.0, 0.0
        if self.best_scores is None:
            action = SAVE
        else:
            change, se = paired_change(self.best_scores, scores, self.total)
            action = decide(change, se, now, self.best_probe, self.cfg.drop_se, self.rollbacks,
                            self.cfg.max_rollbacks)
            if final:
                self.final_dropped = action in (ROLLBACK, STOP)
                action = KEEP if self.final_dropped else action
        if final:
            self.final_probe = now
        if action == SAVE:
            self.best_iteration, self.best_scores, self.best_probe = it, scores.double().clone(), now
        elif action == ROLLBACK:
            self.rollbacks += 1
        elif action == STOP:
            self.stopped_at = it
        metrics = {"guard/probe": now, "guard/change": change, "guard/change_se": se,
                   "guard/best_probe": self.best_probe, "guard/rollbacks": float(self.rollbacks),
                   "guard/lr": self.lr}
        return Verdict(action, it, metrics)

    def at(self, it: int, final: bool = False) -> dict[str, float] | None:
        """The guard's step before iteration `it` (and, final, at the run's end): at a check, score the
        probe and save, keep or roll back; its metrics ({} between checks), None once the run is stopped."""
        if self.stopped:
            return None
        if not (final or self.due(it)):
            return {}
        t0 = time.time()
        verdict = self.check(it, self.score(it), final)
        if verdict.action == SAVE:
            self.save(it)
        elif verdict.action in (ROLLBACK, STOP):
            self.restore(self.best_iteration)
        metrics = {**verdict.metrics, "perf/guard_seconds": time.time() - t0}
        if verdict.action == ROLLBACK:
            log.warning("rl: guard: probe %.4f at iteration %d fell %.4f (%.2f paired SE) below the best "
                        "(iteration %d); rolled back to it, lr now %.3g", metrics["guard/probe"], it,
                        -metrics["guard/change"], -metrics["guard/change"] / max(metrics["guard/change_se"], 1e-12),
                        self.best_iteration, self.lr)
        if verdict.action == STOP:
            log.warning("rl: guard: %s", self.reason())
            self.log_metrics(metrics, it)
            self.stop(it)  # a rerun of the stage finds the run stopped
            return None
        return metrics

    def output(self, done: int) -> dict:
        """The run's end after `done` iterations: a last check of the final policy (logged at step `done`),
        then the model holds the output's weights (rl.guard.output); which, and why."""
        final = self.at(done, final=True)
        if final:
            self.log_metrics(final, done)
        keep_last = self.cfg.output == "last_verified" and not self.stopped and not self.final_dropped
        chosen = done if keep_last else self.best_iteration
        if chosen != done:
            self.restore(self.best_iteration, weights_only=True)
        return {"best_iteration": self.best_iteration, "output_iteration": chosen, "reason": self.reason(chosen)}

    def reason(self, chosen: int | None = None) -> str:
        """Which checkpoint is the run's output (`chosen`; None: the best) and why, for the model's metadata
        and MLflow."""
        rollbacks = f"{self.rollbacks} rollback{'s' if self.rollbacks != 1 else ''}"
        stop = (f"; stopped early at iteration {self.stopped_at}: a drop after rl.guard.max_rollbacks rollbacks"
                if self.stopped else "")
        best = f"iteration {self.best_iteration} (probe {self.best_probe:.4f})"
        if chosen is None or chosen == self.best_iteration:
            dropped = (f"; the final policy (probe {self.final_probe:.4f}) fell more than {self.cfg.drop_se:g} "
                       "paired SE below it" if self.final_dropped else "")
            return f"best verified at {best}; {rollbacks}{stop}{dropped}"
        return (f"final policy at iteration {chosen} (probe {self.final_probe:.4f}), verified within "
                f"{self.cfg.drop_se:g} paired SE of the best at {best}; {rollbacks}")

    def state_dict(self) -> dict:
        return {"best_iteration": -1 if self.best_iteration is None else self.best_iteration,
                "best_scores": self.best_scores if self.best_scores is not None else torch.zeros(0),
                "best_probe": self.best_probe, "rollbacks": self.rollbacks,
                "stopped_at": -1 if self.stopped_at is None else self.stopped_at}

    def load_state_dict(self, state: dict) -> None:
        has_best = int(state["best_iteration"]) >= 0
        self.best_iteration = int(state["best_iteration"]) if has_best else None
        self.best_scores = state["best_scores"] if has_best else None
        self.best_probe, self.rollbacks = float(state["best_probe"]), int(state["rollbacks"])
        self.stopped_at = int(state["stopped_at"]) if int(state["stopped_at"]) >= 0 else None
