"""The RL loop, readable top to bottom: rollout -> reward -> advantage -> clipped update.

Distributed layout (accelerate): the global batch of P prompts is sharded by prompt group, so all
G samples of a prompt live on one rank and group statistics need no communication; gradients
are averaged by DDP; batch-level metrics are all-reduced so every rank logs the same numbers.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from components.config import RLConfig
from components.rewards import compute_score
from components.rl.advantages import ADVANTAGES
from components.rl.checkpoint import save_checkpoint
from components.rl.logprobs import completion_logprobs
from components.rl.losses import POLICY_LOSSES
from components.rl.sampler import PromptSampler
from components.rollout import HFRolloutEngine, RolloutBatch

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_SKIPS = 3


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class RLResult:
    iterations: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def score_batch(batch: RolloutBatch, sources: list[str], answers: list[str]) -> torch.Tensor:
    return torch.tensor(
        [compute_score(s, text, a) for s, text, a in zip(sources, batch.texts, answers)], dtype=torch.float32
    )


def _global_mean(accelerator, value: torch.Tensor, count: int) -> float:
    """Mean over every rank's items: all-reduce (sum, count) so ranks agree exactly."""
    pair = torch.tensor([float(value.sum()), float(count)], dtype=torch.float64)
    pair = accelerator.reduce(pair, reduction="sum") if accelerator.num_processes > 1 else pair
    return float(pair[0] / pair[1])


def train_rl(
    model,
    tokenizer,
    prompts: pd.DataFrame,
    cfg: RLConfig,
    seed: int,
    accelerator,
    log_metrics: Callable[[dict[str, float], int], None] = lambda m, s: None,
    checkpoint_dir: Path | None = None,
):
    """Run cfg.iterations GRPO iterations on `prompts` (columns prompt, answer, source)."""
    advantage_fn = ADVANTAGES[cfg.algorithm]
    loss_fn = POLICY_LOSSES[cfg.algorithm]
    world, rank = accelerator.num_processes, accelerator.process_index
    if cfg.prompts_per_iteration % world:
        raise ValueError(f"rl.prompts_per_iteration ({cfg.prompts_per_iteration}) must divide by the "
                         f"number of processes ({world})")
    G = cfg.num_generations
    sampler = PromptSampler(len(prompts), seed)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    engine = HFRolloutEngine(accelerator.unwrap_model(model), tokenizer)
    mini = max(1, cfg.mini_batch_size // world)
    texts, answers, sources = (prompts[c].tolist() for c in ("prompt", "answer", "source"))

    result = RLResult(iterations=0, seconds=0.0)
    skipped_total, skipped_in_row = 0, 0
    start = time.time()
    for it in range(cfg.iterations):
        t0 = time.time()
        # 1. Rollout: this rank's prompt groups, G samples each, from the current policy.
        chosen = sampler.next(cfg.prompts_per_iteration)[rank::world]
        rep = [i for i in chosen for _ in range(G)]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + it * world + rank)
        batch = engine.generate([texts[i] for i in rep], cfg.max_completion_length, cfg.temperature,
                                cfg.top_p, generator=gen)
        t_rollout = time.time() - t0

        # 2. Verifiable reward and group-relative advantage.
        rewards = score_batch(batch, [sources[i] for i in rep], [answers[i] for i in rep]).view(-1, G)
        advantages = advantage_fn(rewards, scale_rewards=cfg.scale_rewards).reshape(-1)
        mask = batch.completion_mask
        if cfg.mask_truncated_completions:
            mask = mask * (~batch.truncated).long()[:, None]
        old_logprobs = batch.logprobs  # the sampling policy's own log-probs (same weights, fp32)

        # 3. Clipped policy-gradient update over mini-batches.
        losses, entropies, clip_fracs, grad_norms = [], [], [], []
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(len(batch), generator=gen)
            for lo in range(0, len(batch), mini):
                idx = order[lo : lo + mini]
                logprobs, entropy = completion_logprobs(
                    model, batch.prompt_ids[idx], batch.prompt_mask[idx], batch.completion_ids[idx],
                    batch.completion_mask[idx], cfg.temperature,
                )
                loss, stats = loss_fn(logprobs, old_logprobs[idx], advantages[idx], mask[idx],
                                      eps_low=cfg.epsilon, eps_high=cfg.epsilon_high)
                if not torch.isfinite(loss):
                    skipped_total += 1
                    skipped_in_row += 1
                    log.warning("iteration %d: non-finite loss, update skipped (%d in a row)", it, skipped_in_row)
                    if skipped_in_row >= MAX_CONSECUTIVE_SKIPS:
                        raise NonFiniteLossError(
                            f"{skipped_in_row} consecutive non-finite losses at iteration {it}; stopping RL")
                    continue
                skipped_in_row = 0
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                losses.append(loss.item())
                clip_fracs.append(stats["clip_frac"])
                grad_norms.append(float(grad_norm))
                with torch.no_grad():
                    m = batch.completion_mask[idx].float()
                    entropies.append(float((entropy * m).sum() / m.sum().clamp(min=1)))

        # 4. Metrics (stable public names; see docs/metrics.md).
        lengths = batch.completion_mask.sum(-1).float()
        group_std = rewards.std(dim=1, unbiased=True)
        metrics = {
            "reward/mean": _global_mean(accelerator, rewards, rewards.numel()),
            "reward/std": float(rewards.std(unbiased=False)),
            "frac_reward_zero_std": _global_mean(accelerator, (group_std == 0).float(), group_std.numel()),
            "loss/policy": _mean(losses),
            "actor/entropy": _mean(entropies),
            "actor/clip_frac": _mean(clip_fracs),
            "actor/grad_norm": _mean(grad_norms),
            "completions/mean_length": _global_mean(accelerator, lengths, lengths.numel()),
            "completions/clipped_ratio": _global_mean(accelerator, batch.truncated.float(), len(batch)),
            "train/skipped_updates": float(skipped_total),
            "perf/iter_seconds": time.time() - t0,
            "perf/rollout_tokens_per_s": batch.num_completion_tokens / max(t_rollout, 1e-9),
        }
        log_metrics(metrics, it)
        result.history.append(metrics)
        if accelerator.is_main_process and (it % cfg.log_every == 0 or it == cfg.iterations - 1):
            log.info("rl iter %d/%d  reward %.3f  len %.1f  entropy %.3f  %.2fs/it", it + 1, cfg.iterations,
                     metrics["reward/mean"], metrics["completions/mean_length"], metrics["actor/entropy"],
                     metrics["perf/iter_seconds"])
        if checkpoint_dir is not None and ((it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations):
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(checkpoint_dir, it + 1, accelerator.unwrap_model(model), tokenizer,
                                optimizer, sampler)

    result.iterations = cfg.iterations
    result.seconds = time.time() - start
    return accelerator.unwrap_model(model), result


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan
