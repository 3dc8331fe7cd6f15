"""One optimizer step of the policy on a TrainingBatch: the per-micro-batch loss, gradient
accumulation, clipping, and the skip of a non-finite loss. Both updates use it: the base update on
B_t (one micro-batch per step) and PIPO's PI step on B_{t-1} (every micro-batch in one step)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import torch

from components.config import RLConfig
from components.rl.batch import TrainingBatch
from components.rl.logprobs import completion_logprobs
from components.rl.losses import POLICY_LOSSES, kl_k3

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_SKIPS = 3


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class StepResult:
    loss: float  # the step's loss: its micro-batch losses, each weighted by its share of the rows
    stats: list[dict[str, float]]  # per micro-batch: clip_frac, entropy, and kl when rl.beta > 0
    grad_norm: float  # before clipping


@dataclass
class UpdateStats:
    """What the base update's optimizer steps report, over its successful steps (for metrics)."""

    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    clip_fracs: list[float] = field(default_factory=list)
    kls: list[float] = field(default_factory=list)

    def add(self, step: StepResult) -> None:
        self.losses.append(step.loss)
        self.grad_norms.append(step.grad_norm)
        for name, values in (("entropy", self.entropies), ("clip_frac", self.clip_fracs), ("kl", self.kls)):
            values.extend(s[name] for s in step.stats if name in s)


class PolicyUpdate:
    """Optimizer steps on `model` (as accelerate prepared it). Counts non-finite losses: a step with
    one is skipped; MAX_CONSECUTIVE_SKIPS in a row stop training (NonFiniteLossError)."""

    def __init__(self, model, optimizer, accelerator, cfg: RLConfig):
        self.model, self.optimizer, self.acc, self.cfg = model, optimizer, accelerator, cfg
        self.loss_fn = POLICY_LOSSES[cfg.algorithm]
        self.skipped_total = 0
        self.skipped_in_row = 0

    def loss(self, mb: TrainingBatch, surrogate: str) -> tuple[torch.Tensor, dict[str, float]]:
        """The base algorithm's loss on one micro-batch, + beta * KL(pi || pi_ref) when rl.beta > 0."""
        cfg = self.cfg
        logprobs, entropy = completion_logprobs(self.model, mb.prompt_ids, mb.prompt_mask, mb.completion_ids,
                                                mb.completion_mask, cfg.temperature)
        loss, stats = self.loss_fn(logprobs, mb.old_logprobs, mb.advantages, mb.loss_mask, eps_low=cfg.epsilon,
                                   eps_high=cfg.epsilon_high, max_len=cfg.max_completion_length,
                                   surrogate=surrogate, is_weights=mb.is_weights)
        if mb.ref_logprobs is not None:
            kl = kl_k3(logprobs, mb.ref_logprobs, mb.loss_mask)
            loss = loss + cfg.beta * kl
            stats["kl"] = float(kl.detach())
        with torch.no_grad():
            m = mb.completion_mask.float()
            stats["entropy"] = float((entropy * m).sum() / m.sum().clamp(min=1))
        return loss, stats

    def step(self, batch: TrainingBatch, micro_batches: list[torch.Tensor], lr: float,
             surrogate: str) -> StepResult | None:
        """One optimizer step accumulated over the micro-batches (row indices of `batch`), each loss
        weighted by its share of the rows; only the last backward syncs gradients (DDP).

        Returns None when a loss is not finite: the step is skipped and counted."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        total = sum(len(idx) for idx in micro_batches)
        losses, stats = [], []
        for i, idx in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            single = self.acc.num_processes == 1
            with contextlib.nullcontext() if last or single else self.acc.no_sync(self.model):
                if len(idx) == 0:  # keeps DDP's collective calls matched across processes
                    loss = sum(p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad)
                    st = {}
                else:
                    loss, st = self.loss(batch.rows(idx), surrogate)
                    if not torch.isfinite(loss):
                        self._skip()
                        return None
                    loss = loss * (len(idx) / max(total, 1))
                self.acc.backward(loss)
            losses.append(float(loss.detach()))
            stats.append(st)
        grad_norm = float(self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm))
        self.optimizer.step()
        self.skipped_in_row = 0
        return StepResult(loss=sum(losses), stats=stats, grad_norm=grad_norm)

    def _skip(self) -> None:
        self.skipped_total += 1
        self.skipped_in_row += 1
        log.warning("non-finite loss; update skipped (%d in a row)", self.skipped_in_row)
        if self.skipped_in_row >= MAX_CONSECUTIVE_SKIPS:
            raise NonFiniteLossError(f"{self.skipped_in_row} consecutive non-finite losses; stopping the RL stage")
        self.optimizer.zero_grad(set_to_none=True)
