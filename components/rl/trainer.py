"""The RL loop, readable top to bottom. One iteration t (pipo-spec, "One PIPO iteration"):

  1. roll out B_t (P prompts x G samples) from pi_{theta_t}; score verifiable rewards
     (DAPO: drop zero-std groups and refill; soft overlong penalty)
  2. mu_t = mean reward of everything sampled; base advantages A
  3. PIPO (if enabled and active): xi_t from the sliding window, one PI step on cached B_{t-1}
  4. base update on B_t with the base algorithm's loss (ppo_epochs x mini-batches)
  5. cache B_t (ids, masks, old log-probs, attributions), push mu_t into the window

Distributed layout (accelerate): the global batch of P prompts is sharded by prompt group, so all
G samples of a prompt live on one rank and group statistics need no communication; gradients are
averaged by DDP; mu_t and batch metrics are all-reduced, so every rank computes the same xi_t.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from components.config import RewardConfig, RLConfig, RolloutConfig
from components import rewards as reward_fns
from components.rl.advantages import ADVANTAGES
from components.faults import maybe_fault
from components.rl.checkpoint import (CorruptCheckpointError, checkpoint_iteration, load_checkpoint,
                                      rank_state_name, remove_partial_writes, resume_candidates,
                                      save_checkpoint, stage_rank_state)
from components.rl.importance import logprob_mismatch, truncated_is_weights
from components.rl.logprobs import completion_logprobs
from components.rl.losses import POLICY_LOSSES, seq_mean_token_mean
from components.rl.pipo import CachedBatch, PIPOState, attributions, pi_coefficients
from components.rl.sampler import PromptSampler
from components.rollout import RolloutBatch, make_engine

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_SKIPS = 3


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class RLResult:
    iterations: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0
    resumed_run_id: str | None = None


@dataclass
class Rollout:
    """The groups kept for the update, and every reward sampled this iteration (for mu_t)."""

    batch: RolloutBatch
    rewards: torch.Tensor  # [P_kept, G] verifiable rewards of the kept groups
    all_rewards: torch.Tensor  # every sampled reward, kept or filtered
    tokens: int
    seconds: float


def overlong_penalty(lengths: torch.Tensor, max_len: int, buffer: int, factor: float) -> torch.Tensor:
    """DAPO's soft overlong punishment: 0 up to max_len - buffer, then a linear ramp to -factor."""
    if buffer <= 0:
        return torch.zeros_like(lengths, dtype=torch.float32)
    over = (lengths.float() - (max_len - buffer)).clamp(min=0)
    return -factor * (over / buffer).clamp(max=1.0)


def score_batch(batch: RolloutBatch, sources: list[str], answers: list[str], scorer=None,
                reward: RewardConfig | None = None) -> torch.Tensor:
    """Verifiable rewards of a rollout batch, optionally shaped with the format reward.

    Always through a ScoringPool (a transient one when none is given), so that every completion is
    either bounded by construction or scored in a worker under reward.timeout_s."""
    if scorer is None:
        from components.scoring import ScoringPool

        with ScoringPool(0, reward.timeout_s) if reward is not None else ScoringPool(0) as pool:
            correct = pool.score(sources, batch.texts, answers)
    else:
        correct = scorer.score(sources, batch.texts, answers)
    if reward is not None and (reward.correct_weight != 1.0 or reward.format_weight != 0.0):
        correct = [reward_fns.shaped_reward(c, text, correct_weight=reward.correct_weight, format_weight=reward.format_weight)
                   for c, text in zip(correct, batch.texts)]
    return torch.tensor(correct, dtype=torch.float32)


def concat_batches(parts: list[RolloutBatch], pad_id: int) -> RolloutBatch:
    """Stack rollout batches whose prompt and completion widths may differ (re-pad to the widest)."""
    if len(parts) == 1:
        return parts[0]
    lp = max(p.prompt_ids.shape[1] for p in parts)
    lc = max(p.completion_ids.shape[1] for p in parts)

    def left(x, width, value):
        return torch.nn.functional.pad(x, (width - x.shape[1], 0), value=value)

    def right(x, width, value):
        return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

    return RolloutBatch(
        prompts=[s for p in parts for s in p.prompts],
        prompt_ids=torch.cat([left(p.prompt_ids, lp, pad_id) for p in parts]),
        prompt_mask=torch.cat([left(p.prompt_mask, lp, 0) for p in parts]),
        completion_ids=torch.cat([right(p.completion_ids, lc, pad_id) for p in parts]),
        completion_mask=torch.cat([right(p.completion_mask, lc, 0) for p in parts]),
        logprobs=torch.cat([right(p.logprobs, lc, 0.0) for p in parts]),
        truncated=torch.cat([p.truncated for p in parts]),
        texts=[t for p in parts for t in p.texts],
    )


def select(batch: RolloutBatch, idx: torch.Tensor) -> RolloutBatch:
    keep = idx.tolist()
    return RolloutBatch(
        prompts=[batch.prompts[i] for i in keep], prompt_ids=batch.prompt_ids[idx], prompt_mask=batch.prompt_mask[idx],
        completion_ids=batch.completion_ids[idx], completion_mask=batch.completion_mask[idx],
        logprobs=batch.logprobs[idx], truncated=batch.truncated[idx], texts=[batch.texts[i] for i in keep],
    )


def global_mean(accelerator, values: torch.Tensor) -> float:
    """Mean over every rank's items: all-reduce (sum, count), so every rank gets the same number
    (PIPO's mu_t must agree across ranks, or ranks would take different PI steps)."""
    pair = torch.tensor([float(values.sum()), float(values.numel())], dtype=torch.float64)
    if accelerator.num_processes > 1:
        pair = accelerator.reduce(pair.to(accelerator.device), reduction="sum").cpu()
    return float(pair[0] / pair[1]) if pair[1] > 0 else math.nan


class RLTrainer:
    def __init__(self, model, tokenizer, prompts: pd.DataFrame, cfg: RLConfig, seed: int, accelerator,
                 log_metrics: Callable[[dict[str, float], int], None] = lambda m, s: None,
                 checkpoint_dir: Path | None = None, identity: str = "", rollout: RolloutConfig | None = None,
                 reward: RewardConfig | None = None, model_path: str | Path | None = None):
        """rollout/reward None: the trainer's own module samples (hf) and rewards are scored inline,
        unshaped; model_path is the folder the policy was loaded from (the vllm engine starts there)."""
        self.cfg, self.seed, self.acc = cfg, seed, accelerator
        self.rollout_cfg, self.reward_cfg = rollout, reward
        self.world, self.rank = accelerator.num_processes, accelerator.process_index
        if cfg.prompts_per_iteration % self.world:
            raise ValueError(f"rl.prompts_per_iteration ({cfg.prompts_per_iteration}) must divide by the "
                             f"number of processes ({self.world})")
        self.advantage_fn = ADVANTAGES[cfg.algorithm]
        self.loss_fn = POLICY_LOSSES[cfg.algorithm]
        self.is_dapo = cfg.algorithm == "dapo"
        self.tokenizer = tokenizer
        self.log_metrics, self.checkpoint_dir = log_metrics, checkpoint_dir
        # A frozen reference for the KL term is built only when it is used (beta > 0).
        self.ref_model = None
        if cfg.beta > 0:
            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                      weight_decay=cfg.weight_decay)
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        if rollout is None:
            from components.rollout import HFRolloutEngine

            self.engine = HFRolloutEngine(accelerator.unwrap_model(self.model), tokenizer)
        else:
            self.engine = make_engine(rollout, accelerator.unwrap_model(self.model), tokenizer, model_path, None,
                                      seed * 1_000_003 + self.rank, self.world)
        # The engine's weights are brought up to date before a rollout whenever an optimizer step
        # changed them (a resumed checkpoint counts); the hf engine shares the module, a no-op.
        self.weights_dirty = True
        self.scorer = None  # the scoring pool: per-item timeouts for every item not bounded by construction
        if reward is not None:
            from components.scoring import ScoringPool

            self.scorer = ScoringPool(reward.workers, reward.timeout_s)
        self.sampler = PromptSampler(len(prompts), seed)
        self.texts, self.answers, self.sources = (prompts[c].tolist() for c in ("prompt", "answer", "source"))
        self.pipo = PIPOState(cfg.pipo.window, cfg.pipo.history_needed) if cfg.pipo.enabled else None
        self.skipped_total = 0
        self.skipped_in_row = 0
        self.start_iteration = 0
        self.resumed_run_id: str | None = None
        self.meta = {"fingerprint": run_fingerprint(cfg, seed, len(prompts), self.world, identity), "seed": seed,
                     "num_prompts": len(prompts), "num_processes": self.world, "algorithm": cfg.algorithm,
                     "pipo": cfg.pipo.enabled}

    # ---- state (everything a resumed run needs to continue exactly) -----------------------

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "pipo": self.pipo.state_dict() if self.pipo is not None else {},
            "skipped_total": self.skipped_total,
            "rng_torch": torch.get_rng_state(),
            "rng_numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            "rng_numpy_pos": int(np.random.get_state()[2]),
            "rng_python": torch.tensor(random.getstate()[1], dtype=torch.int64),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        if self.pipo is not None:
            self.pipo.load_state_dict(state["pipo"])
        self.skipped_total = int(state["skipped_total"])
        torch.set_rng_state(state["rng_torch"])
        np.random.set_state(("MT19937", state["rng_numpy"].numpy().astype(np.uint32), int(state["rng_numpy_pos"]), 0, 0.0))
        random.setstate((3, tuple(int(x) for x in state["rng_python"].tolist()), None))

    def resume(self, checkpoint_dir: Path) -> int:
        """Continue from the newest loadable checkpoint in checkpoint_dir; returns the next iteration.

        A damaged or missing `latest` falls back to the previous checkpoint, with a warning; a
        checkpoint of another setup raises CheckpointMismatchError naming what differs.
        Only checkpoints at or below rl.iterations count: the iteration count is left out of the
        fingerprint (so raising it continues a run), and a lowered one must not return a model
        trained for longer than asked; the newest checkpoint at or below it is used, or none.
        """
        if self.sharded and resume_candidates(checkpoint_dir):
            raise RuntimeError(
                f"exact resume from {checkpoint_dir} is implemented for one process and DDP; under FSDP/DeepSpeed "
                "the optimizer state is sharded. Start a new run from the checkpoint's model/ folder "
                "(set sft.out_dir to it), or remove the folder to start over.")
        if self.acc.is_main_process:
            for leftover in remove_partial_writes(checkpoint_dir):
                log.warning("rl: removed %s, a checkpoint write that never finished (the process died)", leftover)
        self.acc.wait_for_everyone()
        candidates = resume_candidates(checkpoint_dir)
        target = self.cfg.iterations
        beyond = [p for p in candidates if (checkpoint_iteration(p) or 0) > target]
        if beyond:
            log.warning("rl: ignoring checkpoint(s) %s in %s: past rl.iterations=%d (a longer run of this "
                        "configuration wrote them); using the newest checkpoint at or below iteration %d instead",
                        ", ".join(sorted(p.name for p in beyond)), checkpoint_dir, target, target)
            candidates = [p for p in candidates if p not in beyond]
        for rank_in_list, path in enumerate(candidates):
            try:
                state = load_checkpoint(path, self.acc.unwrap_model(self.model), self.meta, self.rank)
            except CorruptCheckpointError as exc:
                log.warning("rl: %s; falling back to the previous checkpoint", exc)
                continue
            if rank_in_list > 0:
                log.warning("rl: resuming from %s, not the one `latest` named", path.name)
            self.load_state_dict(state)
            meta = json.loads((path / "meta.json").read_text())
            self.start_iteration = int(meta["iteration"])
            self.resumed_run_id = meta.get("mlflow_run_id")
            self.weights_dirty = True
            log.info("rl: resumed from %s at iteration %d (first written by MLflow run %s)", path,
                     self.start_iteration, self.resumed_run_id)
            return self.start_iteration
        if candidates or beyond:
            log.warning("rl: no loadable checkpoint%s in %s; starting from iteration 0",
                        f" at or below iteration {target}" if beyond else "", checkpoint_dir)
        return 0

    @property
    def sharded(self) -> bool:
        """FSDP or DeepSpeed: no rank holds the whole model."""
        from accelerate.utils import DistributedType

        return self.acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)

    def save(self, iteration: int) -> None:
        self.acc.wait_for_everyone()
        # Sharded modes gather the full weights first: a collective every rank must join.
        full = self.acc.get_state_dict(self.model) if self.sharded else None
        states: dict | list[Path] = self.state_dict()
        if self.world > 1:  # each rank's own state (its PIPO cache holds its own shard of B_{t-1})
            stage_rank_state(self.checkpoint_dir, self.rank, states)
            self.acc.wait_for_everyone()
            states = [self.checkpoint_dir / ".staging" / rank_state_name(r) for r in range(self.world)]
        if self.acc.is_main_process:
            save_checkpoint(self.checkpoint_dir, iteration, self.acc.unwrap_model(self.model), self.tokenizer,
                            states, {**self.meta, "mlflow_run_id": _active_run_id()},
                            keep=self.cfg.keep_checkpoints, state_dict=full)
        self.acc.wait_for_everyone()

    # ---- helpers -------------------------------------------------------------------------

    def _global_mean(self, values: torch.Tensor) -> float:
        return global_mean(self.acc, values)

    def _rank_mean(self, value: float) -> float:
        """A per-rank scalar (a loss, an entropy) averaged over ranks, so every rank logs the same."""
        return value if self.world == 1 else global_mean(self.acc, torch.tensor([value]))

    def _global_max(self, value: int) -> int:
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], device=self.acc.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def _loss(self, logprobs, old_logprobs, advantages, mask, ref_logprobs, surrogate="standard", is_weights=None):
        cfg = self.cfg
        loss, stats = self.loss_fn(logprobs, old_logprobs, advantages, mask, eps_low=cfg.epsilon,
                                   eps_high=cfg.epsilon_high, max_len=cfg.max_completion_length,
                                   surrogate=surrogate, is_weights=is_weights)
        if ref_logprobs is not None:
            # k3 estimator of KL(pi || pi_ref) (Schulman), the "low_var_kl" of verl.
            delta = ref_logprobs - logprobs
            kl = seq_mean_token_mean(delta.exp() - delta - 1.0, mask)
            loss = loss + cfg.beta * kl
            stats["kl"] = float(kl.detach())
        return loss, stats

    def _ref_logprobs(self, b: RolloutBatch) -> torch.Tensor | None:
        if self.ref_model is None:
            return None
        return self._score_logprobs(self.ref_model, b)

    @torch.no_grad()
    def _score_logprobs(self, model, b: RolloutBatch) -> torch.Tensor:
        """Log-probs of the sampled completions under `model`, in mini-batches (no grad)."""
        step = max(1, self.cfg.mini_batch_size // self.world)
        parts = []
        for lo in range(0, len(b), step):
            sl = slice(lo, lo + step)
            lp, _ = completion_logprobs(model, b.prompt_ids[sl], b.prompt_mask[sl], b.completion_ids[sl],
                                        b.completion_mask[sl], self.cfg.temperature)
            parts.append(lp)
        return torch.cat(parts) if parts else b.logprobs

    def _sync_engine(self) -> float:
        """Push the trainer's weights into the rollout engine if a step changed them; seconds spent."""
        if not self.weights_dirty:
            return 0.0
        t0 = time.time()
        self.engine.sync_weights(self.acc.unwrap_model(self.model))
        self.weights_dirty = False
        return time.time() - t0

    def _step(self, chunks: list[torch.Tensor], loss_of_chunk, lr: float) -> tuple[list[float], list[dict], float] | None:
        """One optimizer step accumulated over index chunks; only the last backward syncs (DDP).

        Returns None when the loss is not finite (the update is skipped and counted).
        """
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        total = sum(len(c) for c in chunks)
        losses, stats = [], []
        for i, idx in enumerate(chunks):
            sync = i == len(chunks) - 1
            ctx = contextlib.nullcontext() if sync or self.world == 1 else self.acc.no_sync(self.model)
            with ctx:
                if len(idx) == 0:  # keeps DDP's collective calls matched across ranks
                    loss = sum(p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad)
                    st = {}
                else:
                    loss, st = loss_of_chunk(idx)
                    if not torch.isfinite(loss):
                        self.skipped_total += 1
                        self.skipped_in_row += 1
                        log.warning("non-finite loss; update skipped (%d in a row)", self.skipped_in_row)
                        if self.skipped_in_row >= MAX_CONSECUTIVE_SKIPS:
                            raise NonFiniteLossError(f"{self.skipped_in_row} consecutive non-finite losses; "
                                                     "stopping the RL stage")
                        self.optimizer.zero_grad(set_to_none=True)
                        return None
                    loss = loss * (len(idx) / max(total, 1))
                self.acc.backward(loss)
            losses.append(float(loss.detach()))
            stats.append(st)
        grad_norm = float(self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm))
        self.optimizer.step()
        self.weights_dirty = True
        self.skipped_in_row = 0
        return losses, stats, grad_norm

    def _chunks(self, n: int, generator: torch.Generator | None) -> list[list[torch.Tensor]]:
        """Mini-batch index chunks for ppo_epochs passes; the same count on every rank."""
        per_rank = max(1, self.cfg.mini_batch_size // self.world)
        steps = self._global_max(max(1, math.ceil(n / per_rank)))
        out = []
        for _ in range(self.cfg.ppo_epochs):
            order = torch.randperm(n, generator=generator)
            out.extend([order[i * per_rank:(i + 1) * per_rank]] for i in range(steps))
        return out

    # ---- 1. rollout ------------------------------------------------------------------------

    def rollout(self, it: int, generator: torch.Generator) -> Rollout:
        cfg, G = self.cfg, self.cfg.num_generations
        want = cfg.prompts_per_iteration // self.world
        rounds = 1 + (cfg.dapo.max_resample_rounds if self.is_dapo and cfg.dapo.dynamic_sampling else 0)
        kept_parts, kept_rewards, all_rewards = [], [], []
        tokens, seconds, have = 0, 0.0, 0
        self.last_sync_seconds = self._sync_engine()
        for _ in range(rounds):
            chosen = self.sampler.next(cfg.prompts_per_iteration)[self.rank::self.world]
            rep = [i for i in chosen for _ in range(G)]
            t0 = time.time()
            batch = self.engine.generate([self.texts[i] for i in rep], cfg.max_completion_length, cfg.temperature,
                                         cfg.top_p, generator=generator)
            seconds += time.time() - t0
            tokens += batch.num_completion_tokens
            rewards = score_batch(batch, [self.sources[i] for i in rep], [self.answers[i] for i in rep], self.scorer,
                                  self.reward_cfg).view(-1, G)
            all_rewards.append(rewards.reshape(-1))
            if self.is_dapo and cfg.dapo.dynamic_sampling:
                informative = rewards.std(dim=1) > 0
                take = informative.nonzero().flatten()[: want - have]
            else:
                take = torch.arange(rewards.shape[0])[: want - have]
            if len(take):
                seq = (take[:, None] * G + torch.arange(G)).reshape(-1)
                kept_parts.append(select(batch, seq))
                kept_rewards.append(rewards[take])
                have += len(take)
            if have >= want:
                break
        if not kept_parts:  # every group uninformative: keep the last round, its advantages are all 0
            kept_parts, kept_rewards = [batch], [rewards]
        return Rollout(batch=concat_batches(kept_parts, self.tokenizer.pad_token_id),
                       rewards=torch.cat(kept_rewards), all_rewards=torch.cat(all_rewards), tokens=tokens,
                       seconds=seconds)

    # ---- 3. PIPO's policy-improvement step ------------------------------------------------

    def pi_step(self, cached: CachedBatch, coeff: torch.Tensor) -> float:
        """One optimizer step on B_{t-1} with c in place of A, against its cached old log-probs."""
        cfg = self.cfg

        def loss_of_chunk(idx):
            lp, _ = completion_logprobs(self.model, cached.prompt_ids[idx], cached.prompt_mask[idx],
                                        cached.completion_ids[idx], cached.completion_mask[idx], cfg.temperature)
            ref = cached.ref_logprobs[idx] if cached.ref_logprobs is not None else None
            isw = cached.is_weights[idx] if cached.is_weights is not None else None
            return self._loss(lp, cached.old_logprobs[idx], coeff[idx], cached.loss_mask[idx], ref,
                              surrogate=cfg.pipo.pi_clip_mode, is_weights=isw)

        per_rank = max(1, cfg.mini_batch_size // self.world)
        n = len(coeff)
        steps = self._global_max(max(1, math.ceil(n / per_rank)))
        chunks = [torch.arange(n)[i * per_rank:(i + 1) * per_rank] for i in range(steps)]
        out = self._step(chunks, loss_of_chunk, cfg.lr * cfg.pipo.pi_lr_scale)
        return math.nan if out is None else sum(out[0])

    # ---- the loop --------------------------------------------------------------------------

    def iteration(self, it: int) -> dict[str, float]:
        cfg, G = self.cfg, self.cfg.num_generations
        t0 = time.time()
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + it * self.world + self.rank)

        # 1-2. rollout, rewards, mu_t, base advantages
        ro = self.rollout(it, generator)
        maybe_fault("rollout", it)  # tests: a crash in the middle of an iteration
        b = ro.batch
        mu_t = self._global_mean(ro.all_rewards)
        shaped = ro.rewards
        if self.is_dapo and cfg.dapo.overlong_buffer > 0:
            lengths = b.completion_mask.sum(-1).view(-1, G)
            shaped = shaped + overlong_penalty(lengths, cfg.max_completion_length, cfg.dapo.overlong_buffer,
                                               cfg.dapo.overlong_penalty)
        seq_adv = self.advantage_fn(shaped, scale_rewards=cfg.scale_rewards)
        advantages = seq_adv.reshape(-1)
        mask = b.completion_mask.float()
        if cfg.mask_truncated_completions:
            mask = mask * (~b.truncated).float()[:, None]
        ref_logprobs = self._ref_logprobs(b)
        metrics: dict[str, float] = {}
        old_logprobs, is_weights = b.logprobs, None  # hf: the sampler is the trainer's module, same fp32 weights
        ro_cfg = self.rollout_cfg
        if ro_cfg is not None and ro_cfg.trainer_logprobs:
            # The PPO ratio needs pi_old as the trainer computes it; the sampler's log-probs only
            # tell how far the behaviour policy was from it.
            old_logprobs = self._score_logprobs(self.model, b)
            mismatch = logprob_mismatch(old_logprobs, b.logprobs, b.completion_mask)
            metrics["rollout/logprob_diff"] = self._rank_mean(mismatch["rollout/logprob_diff"])
            metrics["rollout/logprob_diff_max"] = self._rank_mean(mismatch["rollout/logprob_diff_max"])
            if ro_cfg.importance_sampling.enabled:
                is_weights = truncated_is_weights(old_logprobs, b.logprobs, b.completion_mask,
                                                  ro_cfg.importance_sampling.cap, ro_cfg.importance_sampling.level)
                m = b.completion_mask.bool()
                metrics["rollout/is_weight_mean"] = self._rank_mean(float(is_weights[m].mean()) if m.any() else 1.0)
                metrics["rollout/is_capped_frac"] = self._rank_mean(
                    float((is_weights[m] >= ro_cfg.importance_sampling.cap).float().mean()) if m.any() else 0.0)

        # 3. PIPO: did the previous update help? Re-apply or push against it on B_{t-1}.
        if self.pipo is not None:
            signal = self.pipo.signal(mu_t, cfg.pipo.neg_scale)
            metrics["pipo/mu_t"] = mu_t
            metrics["pipo/active"] = float(signal is not None)
            if signal is not None:
                metrics.update({"pipo/mu_his": signal.mu_his, "pipo/sigma_his": signal.sigma_his,
                                "pipo/xi": signal.xi, "pipo/phi": signal.phi})
                t_pi = time.time()
                coeff = pi_coefficients(self.pipo.cached.attributions, signal.phi)
                metrics["pipo/pi_loss"] = self._rank_mean(self.pi_step(self.pipo.cached, coeff))
                metrics["perf/pi_seconds"] = time.time() - t_pi

        # 4. base update on B_t
        losses, clip_fracs, kls, grad_norms, entropies = [], [], [], [], []
        for chunk in self._chunks(len(b), generator):
            ent_holder = []

            def loss_of_chunk(idx):
                lp, ent = completion_logprobs(self.model, b.prompt_ids[idx], b.prompt_mask[idx],
                                              b.completion_ids[idx], b.completion_mask[idx], cfg.temperature)
                with torch.no_grad():
                    m = b.completion_mask[idx].float()
                    ent_holder.append(float((ent * m).sum() / m.sum().clamp(min=1)))
                ref = ref_logprobs[idx] if ref_logprobs is not None else None
                isw = is_weights[idx] if is_weights is not None else None
                return self._loss(lp, old_logprobs[idx], advantages[idx], mask[idx], ref, is_weights=isw)

            out = self._step(chunk, loss_of_chunk, cfg.lr)
            if out is None:
                continue
            step_losses, stats, gn = out
            losses.append(sum(step_losses))
            grad_norms.append(gn)
            entropies.extend(ent_holder)
            clip_fracs.extend(s["clip_frac"] for s in stats if "clip_frac" in s)
            kls.extend(s["kl"] for s in stats if "kl" in s)

        # 5. cache B_t for the next iteration's PI step
        if self.pipo is not None:
            self.pipo.push(mu_t, CachedBatch(
                prompt_ids=b.prompt_ids, prompt_mask=b.prompt_mask, completion_ids=b.completion_ids,
                completion_mask=b.completion_mask, loss_mask=mask, old_logprobs=old_logprobs,
                attributions=attributions(seq_adv).reshape(-1), ref_logprobs=ref_logprobs, is_weights=is_weights))

        lengths = b.completion_mask.sum(-1).float()
        group_std = ro.all_rewards.view(-1, G).std(dim=1)  # over every sampled group, before DAPO's filter
        second_moment = self._global_mean(ro.all_rewards.double() ** 2)
        metrics.update({
            "reward/mean": mu_t,
            "reward/std": math.sqrt(max(second_moment - mu_t**2, 0.0)),
            "frac_reward_zero_std": self._global_mean((group_std == 0).float()),
            "loss/policy": self._rank_mean(_mean(losses)),
            "actor/entropy": self._rank_mean(_mean(entropies)),
            "actor/clip_frac": self._rank_mean(_mean(clip_fracs)),
            "actor/grad_norm": _mean(grad_norms),
            "completions/mean_length": self._global_mean(lengths),
            "completions/clipped_ratio": self._global_mean(b.truncated.float()),
            "train/skipped_updates": float(self.skipped_total),
            "perf/iter_seconds": time.time() - t0,
            "perf/rollout_tokens_per_s": ro.tokens / max(ro.seconds, 1e-9),
            "perf/weight_sync_seconds": self.last_sync_seconds,
        })
        if self.scorer is not None:
            metrics["reward/scoring_timeouts"] = float(self.scorer.timeouts)
            metrics["reward/scoring_crashes"] = float(self.scorer.crashes)
        if kls:
            metrics["actor/kl"] = self._rank_mean(_mean(kls))
        return metrics

    def close(self) -> None:
        """Stop the scoring workers (the rollout engine goes with the process)."""
        if self.scorer is not None:
            self.scorer.close()

    def train(self) -> RLResult:
        cfg = self.cfg
        result = RLResult(iterations=0, seconds=0.0)
        start = time.time()
        for it in range(self.start_iteration, cfg.iterations):
            metrics = self.iteration(it)
            self.log_metrics(metrics, it)
            result.history.append(metrics)
            if self.acc.is_main_process and (it % cfg.log_every == 0 or it == cfg.iterations - 1):
                log.info("rl iter %d/%d  reward %.3f  len %.1f  entropy %.3f%s  %.2fs/it", it + 1, cfg.iterations,
                         metrics["reward/mean"], metrics["completions/mean_length"], metrics["actor/entropy"],
                         f"  xi {metrics['pipo/xi']:+.2f}" if "pipo/xi" in metrics else "",
                         metrics["perf/iter_seconds"])
            if self.checkpoint_dir is not None and ((it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations):
                self.save(it + 1)
        result.iterations = cfg.iterations
        result.seconds = time.time() - start
        return result


def run_fingerprint(cfg: RLConfig, seed: int, num_prompts: int, world: int, extra: str = "") -> str:
    """Identity of a training trajectory: what must match for a checkpoint to be resumable.

    Bookkeeping fields (iteration count, logging, checkpoint cadence, paths) are left out, so a
    run can be extended or re-logged and still resume.
    """
    trajectory = cfg.model_dump(exclude={"iterations", "log_every", "checkpoint_every", "keep_checkpoints", "out_dir",
                                         "checkpoint_dir"})
    blob = json.dumps([trajectory, seed, num_prompts, world, extra], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_rl(model, tokenizer, prompts: pd.DataFrame, cfg: RLConfig, seed: int, accelerator,
             log_metrics: Callable[[dict[str, float], int], None] = lambda m, s: None,
             checkpoint_dir: Path | None = None, resume: bool = False, identity: str = "",
             rollout: RolloutConfig | None = None, reward: RewardConfig | None = None,
             model_path: str | Path | None = None,
             on_resume: Callable[[int, str | None], None] = lambda it, run_id: None):
    """Run cfg.iterations RL iterations on `prompts` (columns prompt, answer, source).

    With resume=True and a checkpoint in checkpoint_dir, continue from it instead of starting over;
    on_resume(iteration, run id that wrote the checkpoint) is called before training continues.
    """
    trainer = RLTrainer(model, tokenizer, prompts, cfg, seed, accelerator, log_metrics, checkpoint_dir, identity,
                        rollout=rollout, reward=reward, model_path=model_path)
    if resume and checkpoint_dir is not None and trainer.resume(checkpoint_dir):
        on_resume(trainer.start_iteration, trainer.resumed_run_id)
    try:
        result = trainer.train()
    finally:
        trainer.close()
    result.resumed_from = trainer.start_iteration
    result.resumed_run_id = trainer.resumed_run_id
    return accelerator.unwrap_model(trainer.model), result


def _active_run_id() -> str | None:
    """The MLflow run this process logs to, recorded in checkpoints so a resumed run can name it."""
    try:
        import mlflow

        run = mlflow.active_run()
    except ImportError:  # the vLLM test environment has no MLflow
        return None
    return run.info.run_id if run is not None else None


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan
