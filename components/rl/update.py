"""One optimizer step of the policy on a TrainingBatch: the per-micro-batch loss, gradient
accumulation, clipping, and the skip of a non-finite loss. Both updates use it: the base update on
B_t (one step per mini-batch) and PIPO's PI step on B_{t-1} (one step over the whole batch, or as many
as the base update takes with rl.pipo.pi_steps match_base). With rl.pipo.joint the PI loss on B_{t-1}
joins the base update's first step instead (`JointLoss`): one backward pass over both batches'
micro-batches, each loss over its own batch's denominators, then one optimizer step.

Gradient accumulation is exact: every micro-batch loss is divided by the denominator of the WHOLE
step (sequences, tokens or Dr.GRPO's constant, summed over every process), so the accumulated
gradient is the one of the step's batch at once, whatever the split. DDP averages gradients over
processes, so each process's loss is multiplied back by the process count.

Rows whose gradient is exactly zero are not run at all (`rows_to_run`): with rl.beta = 0 a response
with advantage (or PI coefficient) 0 contributes 0 * d(ratio) to every loss here, so its forward and
backward are wasted. Since the denominators still count it, the step is the same update (to float
summation order). With a KL term (beta > 0) every row has a gradient and every row runs.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field

import torch

from components.config import RLConfig
from components.rl.batch import StepPlan, TrainingBatch
from components.infra.threads import ThreadChooser, torch_threads
from components.rl.collectives import global_max, global_sums
from components.rl.logprobs import completion_logprobs, lm_head_of
from components.rl.losses import AGGREGATIONS, algorithm_loss, kl_k3, sequences

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_SKIPS = 3


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class StepOutcome:
    loss: float  # the step's loss: its micro-batch losses, each weighted by its share of the rows
    stats: list[dict[str, float]]  # per micro-batch: clip_frac, entropy (rl.log_entropy), kl when rl.beta > 0
    grad_norm: float  # before clipping


@dataclass
class UpdateStats:
    """What the base update's optimizer steps report, over its successful steps (for metrics)."""

    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    clip_fracs: list[float] = field(default_factory=list)
    kls: list[float] = field(default_factory=list)

    rows: int = 0  # row-steps of the optimizer steps (a row counts once per step it is in)
    rows_run: int = 0  # of them, those that ran a forward/backward (the rest had a zero gradient)

    def add(self, step: StepOutcome, plan: StepPlan) -> None:
        self.rows += len(plan.rows)
        self.rows_run += plan.rows_run
        self.losses.append(step.loss)
        self.grad_norms.append(step.grad_norm)
        for name, values in (("entropy", self.entropies), ("clip_frac", self.clip_fracs), ("kl", self.kls)):
            values.extend(s[name] for s in step.stats if name in s)


@dataclass(frozen=True)
class LossSpec:
    """How a step's loss is formed: the surrogate (losses.SURROGATES), its clip range, a factor on the loss."""

    surrogate: str
    eps_low: float
    eps_high: float
    scale: float = 1.0


@dataclass
class JointLoss:
    """A second batch's loss added to a step (rl.pipo.joint: the PI loss on B_{t-1} in the base step on B_t),
    over that batch's own denominators, as its separate step would have. `loss` is set once the step ran it."""

    batch: TrainingBatch
    plan: StepPlan
    spec: LossSpec
    loss: float = math.nan


class PolicyUpdate:
    """Optimizer steps on `model` (as accelerate prepared it). Counts non-finite losses: a step with
    one (on any process) is skipped by every process; MAX_CONSECUTIVE_SKIPS in a row stop training
    (NonFiniteLossError, raised on every process alike)."""

    def __init__(self, model, optimizer, accelerator, cfg: RLConfig, *, chunk_tokens: int, sharded: bool):
        """chunk_tokens: model.lm_head_chunk_tokens. sharded: FSDP/DeepSpeed, where the LM head is only
        whole inside the model's forward (log-probs then come from the model's own logits)."""
        self.model, self.optimizer, self.acc, self.cfg = model, optimizer, accelerator, cfg
        self.loss_fn = algorithm_loss(cfg.record)  # the algorithm's policy loss, its aggregation bound
        self.normaliser = AGGREGATIONS[cfg.record.aggregation].normaliser
        self.chunk_tokens = chunk_tokens
        self.lm_head = None if sharded else lm_head_of(accelerator.unwrap_model(model))
        self.skipped_total = 0
        self.skipped_in_row = 0
        settings = cfg.effective  # the algorithm's published clip range unless rl.epsilon* set one
        self.base_loss = LossSpec("standard", settings.epsilon, settings.epsilon_high)
        # On CPU the thread count follows measured speed (rl.update_threads null), as for decoding:
        # on a shared machine a second thread can make a step twice as slow instead of faster.
        on_cpu = accelerator.device.type == "cpu"
        self.threads = ThreadChooser() if on_cpu and cfg.update_threads is None else None
        self.fixed_threads = cfg.update_threads if on_cpu else None

    def logprobs(self, mb: TrainingBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The policy's completion log-probs (and entropy when rl.log_entropy), under the accelerator's
        mixed precision (autocast also covers the LM-head chunks, which run outside the model's forward)."""
        with self.acc.autocast():
            return completion_logprobs(self.model, mb.prompt_ids, mb.prompt_mask, mb.completion_ids,
                                       mb.completion_mask, self.cfg.temperature, lm_head=self.lm_head,
                                       chunk_tokens=self.chunk_tokens, entropy=self.cfg.log_entropy)

    def rows_to_run(self, advantages: torch.Tensor) -> torch.Tensor | None:
        """bool [B]: the rows whose loss has a gradient (advantage != 0), or None when every row has
        one (rl.beta > 0: the KL term) or skipping is off (rl.skip_zero_advantage)."""
        if self.cfg.beta > 0 or not self.cfg.skip_zero_advantage:
            return None
        return advantages != 0

    def normalisers(self, batch: TrainingBatch, rows: torch.Tensor) -> tuple[float, float]:
        """(policy-loss, KL) denominators of the step's rows (skipped ones included) over every
        process, divided by the process count (DDP's gradient average multiplies it back)."""
        mask = batch.loss_mask[rows]
        local = [self.normaliser(mask, self.cfg.max_completion_length), sequences(mask, 0)]
        world = self.acc.num_processes
        return tuple(max(total, 1.0) / world for total in global_sums(self.acc, local))

    def loss(self, mb: TrainingBatch, spec: LossSpec, normaliser: float,
             kl_normaliser: float) -> tuple[torch.Tensor, dict[str, float]]:
        """This micro-batch's share of the step's loss: (the base algorithm's loss + beta * KL(pi || pi_ref)
        when rl.beta > 0) x spec.scale, each over the step's denominators."""
        cfg = self.cfg
        logprobs, entropy = self.logprobs(mb)
        loss, stats = self.loss_fn(logprobs, mb.old_logprobs, mb.advantages, mb.loss_mask, eps_low=spec.eps_low,
                                   eps_high=spec.eps_high, max_len=cfg.max_completion_length,
                                   surrogate=spec.surrogate, is_weights=mb.is_weights, normaliser=normaliser)
        if mb.ref_logprobs is not None:
            kl = kl_k3(logprobs, mb.ref_logprobs, mb.loss_mask, kl_normaliser)
            loss = loss + cfg.beta * kl
            # the micro-batch's own mean KL, for the metric
            stats["kl"] = float(kl.detach()) * kl_normaliser / max(len(mb), 1)
        if spec.scale != 1.0:
            loss = loss * spec.scale
        if entropy is not None:
            with torch.no_grad():
                m = mb.completion_mask.float()
                stats["entropy"] = float((entropy * m).sum() / m.sum().clamp(min=1))
        return loss, stats

    @contextlib.contextmanager
    def threads_for(self, parts: list[tuple[TrainingBatch, StepPlan]]):
        """The torch threads a step runs on: rl.update_threads, or the count measured fastest on CPU."""
        if self.threads is None:
            with torch_threads(self.fixed_threads) if self.fixed_threads else contextlib.nullcontext():
                yield
            return
        with self.threads.run() as work:
            yield
            work.append(sum(int(b.completion_mask[m].sum()) for b, plan in parts for m in plan.micro_batches if len(m)))

    def step(self, batch: TrainingBatch, plan: StepPlan, lr: float, spec: LossSpec,
             joint: JointLoss | None = None) -> StepOutcome | None:
        """One optimizer step accumulated over plan.micro_batches (row indices of `batch`), each loss
        over the denominators of all of plan.rows; only the last backward syncs gradients (DDP).
        joint: a second batch's loss in the same step (its micro-batches after these; joint.loss is set).
        The outcome's loss and stats are `batch`'s alone.

        Returns None when a loss is not finite on any process: every process skips the step and counts it."""
        parts = [(batch, plan, spec)] + ([(joint.batch, joint.plan, joint.spec)] if joint is not None else [])
        with self.threads_for([(b, p) for b, p, _ in parts]):
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.zero_grad(set_to_none=True)
            norms = [self.normalisers(b, p.rows) for b, p, _ in parts]  # each batch over its own denominators
            work = [(part, b, s, *norms[part], idx) for part, (b, p, s) in enumerate(parts) for idx in p.micro_batches]
            losses, stats = [[] for _ in parts], []
            for i, (part, b, s, normaliser, kl_normaliser, idx) in enumerate(work):
                last = i == len(work) - 1
                single = self.acc.num_processes == 1
                with contextlib.nullcontext() if last or single else self.acc.no_sync(self.model):
                    if len(idx) == 0 and single:  # nothing to run: a zero gradient, so the optimizer still steps
                        loss = sum(p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad)
                        st = {}
                    elif len(idx) == 0:
                        # Another process has more to run. DDP (and FSDP) all-reduce gradients only for a
                        # backward that follows the wrapped model's forward, so this one runs a real forward
                        # on one row and contributes 0 x its loss.
                        loss = self.loss(b.micro_batch(torch.zeros(1, dtype=torch.long)), s, normaliser,
                                         kl_normaliser)[0] * 0.0
                        st = {}
                    else:
                        loss, st = self.loss(b.micro_batch(idx), s, normaliser, kl_normaliser)
                    if self.any_non_finite(loss):
                        self._skip()
                        return None
                    self.acc.backward(loss)
                losses[part].append(float(loss.detach()))
                if part == 0:
                    stats.append(st)
            grad_norm = float(self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm))
            self.optimizer.step()
            self.skipped_in_row = 0
            if joint is not None:
                joint.loss = sum(losses[1])
            return StepOutcome(loss=sum(losses[0]), stats=stats, grad_norm=grad_norm)

    def any_non_finite(self, loss: torch.Tensor) -> bool:
        """Whether this micro-batch's loss is not finite on ANY process (MAX of a 0/1 flag over processes).
        Every process then skips the step at the same micro-batch, before any backward: one that
        stopped alone would leave the others waiting in the gradient all-reduce (a hang), or pair
        that all-reduce with its next collective. One process: no communication."""
        return bool(global_max(self.acc, int(not torch.isfinite(loss.detach()))))

    def _skip(self) -> None:
        self.skipped_total += 1
        self.skipped_in_row += 1
        log.warning("non-finite loss; update skipped (%d in a row)", self.skipped_in_row)
        if self.skipped_in_row >= MAX_CONSECUTIVE_SKIPS:
            raise NonFiniteLossError(f"{self.skipped_in_row} consecutive non-finite losses; stopping the RL stage")
        self.optimizer.zero_grad(set_to_none=True)
