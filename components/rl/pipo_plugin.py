"""PIPO as the trainer calls it: an object with two calls per iteration (docs/pipo.md, "One PIPO iteration").

    before_update(mu_t, it, shuffle)   step 3: xi_t (window or paired signal) and the PI update on the
                                       cached B_{t-1}, in either clip mode; returns what it did (PIReport).
                                       rl.pipo.joint: no step here; the PI loss (PIReport.joint) goes into
                                       the base update's first step (update.py JointLoss)
    after_update(mu_t, batch, ...)     step 5: B_t (its attributions) becomes the cached batch; mu_t joins H

It is built from what it needs and nothing else: the PIPO settings, the policy update it steps with
(PolicyUpdate: its base loss, zero-gradient rows and optimizer step), the micro-batch planner, the base
update's lr and epochs, the algorithm's authors' surrogate, a sum over processes, and for the paired
signal a function that samples prompt groups again with the current policy; the run's seed for the
random sign of rl.pipo.blind. Its state (the window H and
the cached batch: components/rl/pipo.py PIPOState) is checkpointed through state_dict / load_state_dict.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from components.config import PIPOConfig
from components.rl import streams
from components.rl.batch import MicroBatches, TrainingBatch
from components.rl.collectives import Sums, paired_change
from components.rl.pipo import PIPOState, Signal, paired_signal
from components.rl.update import JointLoss, LossSpec, PolicyUpdate

# prompt indices [n] and the iteration -> their rewards [n, G] sampled again with the current policy
Resample = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass
class PIReport:
    """What the PI step of an iteration did (for the metrics and the trainer's weight sync)."""

    signal: Signal | None  # None: PIPO is not active this iteration (no cached batch or short window)
    loss: float = math.nan
    seconds: float = 0.0
    rows: int = 0  # rows of B_{t-1} (summed over the PI step's optimizer steps)
    rows_run: int = 0  # of them, those with a non-zero coefficient (the rest were skipped)
    paired_seconds: float = 0.0  # re-sampling B_{t-1}'s prompts for the paired signal
    optimizer_steps: int = 0  # that changed the weights (0 with rl.pipo.joint: the base step takes the PI loss)
    joint: JointLoss | None = None  # rl.pipo.joint: the PI loss to add to the base update's first step

    @property
    def pi_loss(self) -> float:
        """The PI step's loss (with rl.pipo.joint: the PI part of the joint step, once it ran)."""
        return self.joint.loss if self.joint is not None else self.loss


class PIPO:
    def __init__(self, cfg: PIPOConfig, *, update: PolicyUpdate, micro: MicroBatches, lr: float, ppo_epochs: int,
                 group_size: int, authors_surrogate: str, total: Sums = lambda xs: xs,
                 resample: Resample | None = None, seed: int = 0):
        """cfg: rl.pipo. lr, ppo_epochs: the base update's (rl.lr, rl.ppo_epochs). group_size: G.
        authors_surrogate: the PI step's surrogate in pi_clip_mode authors (the algorithm record's).
        total: per-process values -> their sums over every process. resample: needed for signal paired.
        seed: the run's seed (rl.pipo.blind's signs)."""
        if cfg.signal == "paired" and resample is None:
            raise ValueError("rl.pipo.signal paired needs a resample function")
        self.cfg, self.update, self.micro = cfg, update, micro
        self.lr, self.ppo_epochs, self.group_size = lr, ppo_epochs, group_size
        self.authors_surrogate, self.total, self.resample, self.seed = authors_surrogate, total, resample, seed
        self.state = PIPOState(cfg.window, cfg.effective_min_history, cfg.pi_clip_mode, cfg.window_membership)

    # ---- the two calls of an iteration ----------------------------------------------------

    def before_update(self, mu_t: float, it: int, shuffle: torch.Generator | None = None) -> PIReport:
        """Did the last update help? If PIPO is active, re-apply it (xi_t > 0) or push gently against
        it (xi_t < 0) on B_{t-1}, with c = clamp(a * phi(xi_t)) in place of A (rl.pipo.pi_clip_mode,
        rl.pipo.pi_steps). xi_t from the window of batch means, or from re-sampled prompts (rl.pipo.signal);
        with rl.pipo.blind its sign at random. shuffle: the mini-batch order of pi_steps match_base."""
        if not self.state.active:
            return PIReport(signal=None)
        t0 = time.time()
        signal = self.paired(it) if self.cfg.signal == "paired" else self.state.signal(mu_t, self.cfg.neg_scale)
        paired_seconds = time.time() - t0 if self.cfg.signal == "paired" else 0.0
        if self.cfg.blind:
            signal = signal.blinded(self.blind_sign(it))
        if not signal.takes_step:  # lambda = 0 after a harmful update: no step (a zero step still moves AdamW)
            return PIReport(signal=signal, rows=len(self.state.cached), paired_seconds=paired_seconds)
        t0 = time.time()
        if self.cfg.joint:
            return self.joint_loss(self.state.pi_batch(signal), self.pi_loss(signal), signal, paired_seconds)
        report = self.pi_step(self.state.pi_batch(signal), self.pi_loss(signal), shuffle)
        report.signal, report.seconds, report.paired_seconds = signal, time.time() - t0, paired_seconds
        return report

    def after_update(self, mu_t: float, batch: TrainingBatch, prompts: torch.Tensor,
                     group_rewards: torch.Tensor) -> None:
        """B_t becomes the next iteration's B_{t-1} (with its groups' prompts and mean rewards); mu_t joins H."""
        self.state.push(mu_t, batch, self.group_size, prompts, group_rewards)

    # ---- its parts ------------------------------------------------------------------------

    def pi_loss(self, signal: Signal) -> LossSpec:
        """The PI step's loss: the spec's sign-aware clip on the algorithm's range ("standard"), or the
        authors' (their surrogate for this base, the symmetric range 1 +- epsilon for every base, and
        lambda on the loss when xi < 0)."""
        base = self.update.base_loss
        if self.cfg.pi_clip_mode == "standard":
            return base
        return LossSpec(self.authors_surrogate, base.eps_low, base.eps_low, scale=signal.loss_scale)

    def pi_step(self, batch: TrainingBatch, spec: LossSpec | None = None,
                shuffle: torch.Generator | None = None) -> PIReport:
        """The PI update on B_{t-1} (its advantages: the PI coefficients) against its cached old log-probs,
        with lr x pi_lr_scale: one optimizer step on the whole batch (pi_steps one), or as many as the
        base update takes, ppo_epochs x mini-batches in the `shuffle` order (match_base, the authors').
        Rows with a zero coefficient are skipped."""
        spec = spec or self.update.base_loss
        runs = self.update.rows_to_run(batch.advantages)
        if self.cfg.pi_steps == "one":
            plan = [self.micro.for_one_step(batch.prompt_mask, batch.completion_mask, runs)]
        else:
            plan = list(self.micro.for_base_update(batch.prompt_mask, batch.completion_mask, self.ppo_epochs,
                                                   shuffle, runs))
        losses, stepped = [], 0
        for step_plan in plan:
            step = self.update.step(batch, step_plan, self.lr * self.cfg.pi_lr_scale, spec)
            stepped += step is not None
            losses.append(math.nan if step is None else step.loss)
        return PIReport(signal=None, loss=sum(losses) / len(losses), rows=sum(len(r.rows) for r in plan),
                        rows_run=sum(r.rows_run for r in plan), optimizer_steps=stepped)

    def joint_loss(self, batch: TrainingBatch, spec: LossSpec, signal: Signal, paired_seconds: float) -> PIReport:
        """rl.pipo.joint: the PI loss on the whole B_{t-1} (rows with a zero coefficient skipped), for the
        base update to add to its first step; no optimizer step of its own (config: pi_steps one, lr scale 1)."""
        runs = self.update.rows_to_run(batch.advantages)
        plan = self.micro.for_one_step(batch.prompt_mask, batch.completion_mask, runs)
        return PIReport(signal=signal, rows=len(plan.rows), rows_run=plan.rows_run, paired_seconds=paired_seconds,
                        joint=JointLoss(batch, plan, spec))

    def blind_sign(self, it: int) -> float:
        """rl.pipo.blind: +1 or -1 with p = 0.5, from (seed, iteration) alone: the same on every process
        (rank 0's stream everywhere) and the same after a resume."""
        return 1.0 if streams.numpy_stream(streams.PIPO_BLIND, self.seed, it, 0).random() < 0.5 else -1.0

    def paired(self, it: int) -> Signal:
        """The paired signal: a share of B_{t-1}'s prompt groups sampled again with the current policy
        (rl.pipo.paired_share); xi = the mean change of their group reward over its standard error."""
        s = self.state
        n = math.ceil(self.cfg.paired_share * len(s.cached_prompts))
        before = s.cached_group_rewards[:n]
        after = self.resample(s.cached_prompts[:n], it).double().mean(dim=1) if n else before
        change, se = paired_change(before, after, self.total)
        count, before_sum = self.total([float(n), float(before.sum())])
        mean_before = before_sum / max(count, 1.0)
        return paired_signal(mean_before, mean_before + change, se, self.cfg.neg_scale, self.cfg.pi_clip_mode)

    def state_dict(self) -> dict:
        return self.state.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.state.load_state_dict(state)
