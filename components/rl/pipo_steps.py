"""PIPO's steps of the RL iteration (steps 3 and 5 of components/rl/trainer.py), as a mixin of RLTrainer:
the improvement signal (window or paired), the PI update on B_{t-1} in either clip mode, and caching B_t."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from components.rl.batch import TrainingBatch
from components.rl.collectives import global_sums
from components.rl.pipo import Signal, paired_signal
from components.rl.update import LossSpec


@dataclass
class PIStep:
    signal: Signal | None  # None: PIPO is not active this iteration (no cached batch or short window)
    loss: float = math.nan
    seconds: float = 0.0
    rows: int = 0  # rows of B_{t-1} (summed over the PI step's optimizer steps)
    rows_run: int = 0  # of them, those with a non-zero coefficient (the rest were skipped)
    paired_seconds: float = 0.0  # re-sampling B_{t-1}'s prompts for the paired signal


class PIPOSteps:
    """Uses the trainer's cfg, pipo (PIPOState), update (PolicyUpdate), micro (MicroBatches), acc, seed,
    world, rank, weights_dirty, sample_groups, verifier_noise and _sync_engine."""

    def pipo_step(self, mu_t: float, it: int = 0, generator: torch.Generator | None = None) -> PIStep | None:
        """Did the last update help? If PIPO is active, re-apply it (xi_t > 0) or push gently against
        it (xi_t < 0) on B_{t-1}, with c = clamp(a * phi(xi_t)) in place of A (rl.pipo.pi_clip_mode,
        rl.pipo.pi_steps). xi_t from the window of batch means, or from re-sampled prompts (rl.pipo.signal)."""
        if self.pipo is None:
            return None
        if not self.pipo.active:
            return PIStep(signal=None)
        paired_seconds = 0.0
        if self.cfg.pipo.signal == "paired":
            t0 = time.time()
            signal = self.paired(it)
            paired_seconds = time.time() - t0
        else:
            signal = self.pipo.signal(mu_t, self.cfg.pipo.neg_scale)
        if not signal.takes_step:  # lambda = 0 after a harmful update: no step (a zero step still moves AdamW)
            return PIStep(signal=signal, rows=len(self.pipo.cached), paired_seconds=paired_seconds)
        t0 = time.time()
        loss, rows, rows_run = self.pi_step(self.pipo.pi_batch(signal), self.pi_loss(signal), generator)
        return PIStep(signal=signal, loss=loss, seconds=time.time() - t0, rows=rows, rows_run=rows_run,
                      paired_seconds=paired_seconds)

    def pi_loss(self, signal: Signal) -> LossSpec:
        """The PI step's loss: the spec's sign-aware clip on the algorithm's range ("standard"), or the
        authors' (their -min(rho, clip(rho)) c with the symmetric range 1 +- epsilon for every base, GSPO's
        sign-aware sequence form, and lambda on the loss when xi < 0)."""
        base = self.update.base_loss
        if self.cfg.pipo.pi_clip_mode == "standard":
            return base
        return LossSpec(self.cfg.record.pipo_authors_surrogate, base.eps_low, base.eps_low, scale=signal.loss_scale)

    def pi_step(self, batch: TrainingBatch, spec: LossSpec | None = None,
                generator: torch.Generator | None = None) -> tuple[float, int, int]:
        """The PI update on B_{t-1} (its advantages: the PI coefficients) against its cached old log-probs,
        with lr x pi_lr_scale: one optimizer step on the whole batch (pi_steps: one), or as many as the
        base update takes, ppo_epochs x mini-batches (match_base, the authors'). Rows with a zero
        coefficient are skipped. Returns the mean loss, and the row-steps planned and run."""
        cfg, spec = self.cfg, spec or self.update.base_loss
        runs = self.update.rows_to_run(batch.advantages)
        if cfg.pipo.pi_steps == "one":
            plan = [self.micro.for_one_step(batch.prompt_mask, batch.completion_mask, runs)]
        else:
            plan = list(self.micro.for_base_update(batch.prompt_mask, batch.completion_mask, cfg.ppo_epochs,
                                                   generator, runs))
        losses = []
        for rows in plan:
            step = self.update.step(batch, rows, cfg.lr * cfg.pipo.pi_lr_scale, spec)
            self.weights_dirty |= step is not None
            losses.append(math.nan if step is None else step.loss)
        return sum(losses) / len(losses), sum(len(r.rows) for r in plan), sum(r.rows_run for r in plan)

    def paired(self, it: int) -> Signal:
        """The paired signal: a share of B_{t-1}'s prompt groups sampled again with the current policy
        (rl.pipo.paired_share); xi = the mean change of their group reward over its standard error."""
        p = self.pipo
        n = math.ceil(self.cfg.pipo.paired_share * len(p.cached_prompts))
        stream = torch.Generator().manual_seed(self.seed * 1_000_003 + it * self.world + self.rank + 13)
        d = torch.zeros(0, dtype=torch.float64)
        if n:
            self._sync_engine()
            _, rewards, _ = self.sample_groups(p.cached_prompts[:n], stream, self.verifier_noise(it))
            d = rewards.double().mean(dim=1) - p.cached_group_rewards[:n]
        count, total, squares, before = global_sums(
            self.acc, [float(n), float(d.sum()), float((d**2).sum()), float(p.cached_group_rewards[:n].sum())])
        mean = total / max(count, 1.0)
        se = math.sqrt(max(squares - count * mean**2, 0.0) / (count - 1) / count) if count > 1 else 0.0
        before = before / max(count, 1.0)
        return paired_signal(before, before + mean, se, self.cfg.pipo.neg_scale, self.cfg.pipo.pi_clip_mode)

    def cache(self, mu_t: float, batch: TrainingBatch, prompts: torch.Tensor, group_rewards: torch.Tensor) -> None:
        """B_t becomes the next iteration's B_{t-1} (with its groups' prompts and mean rewards); mu_t joins H."""
        if self.pipo is not None:
            self.pipo.push(mu_t, batch, self.cfg.num_generations, prompts, group_rewards)
