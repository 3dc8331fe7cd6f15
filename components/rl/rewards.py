"""Rewards of a rollout: scored by the verifiers, then shaped by the steps the config chooses; `Rollout`,
what an iteration's rollout kept.

Two kinds of step, built once from the config (`shaping_steps`) so the loop has no per-algorithm
branches:
  group filter    which prompt groups of a generation round the update keeps, and how many extra
                  rounds may refill the dropped ones (DAPO's dynamic sampling; else keep all, one round)
  reward shaping  functions (rewards [P, G], batch) -> rewards [P, G] applied to the kept groups
                  before the advantages (DAPO's soft overlong penalty)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from components.config import RewardConfig, RLConfig
from components.reward import score as reward_fns
from components.reward.pool import ScoringPool
from components.rollout.types import RolloutBatch


@dataclass
class Rollout:
    """The groups kept for the update, and every reward sampled this iteration (for mu_t)."""

    batch: RolloutBatch
    rewards: torch.Tensor  # [P_kept, G] verifiable rewards of the kept groups
    all_rewards: torch.Tensor  # every sampled reward, kept or filtered
    prompts: torch.Tensor  # [P_kept] the kept groups' prompt indices
    tokens: int
    seconds: float
    sync_seconds: float  # spent bringing the rollout engine's weights up to date first


def score_batch(batch: RolloutBatch, sources: list[str], answers: list[str], scorer: ScoringPool,
                reward: RewardConfig, noise: "VerifierNoise | None" = None) -> torch.Tensor:
    """[B] verifiable rewards of a rollout batch, shaped with the format reward (reward.format_weight).

    Through the ScoringPool `pool_for(reward)` built, so that every completion is either bounded by
    construction or scored in a worker under reward.timeout_s. noise: a verifier that errs (experiments)."""
    correct = scorer.score(sources, batch.texts, answers)
    if noise is not None:
        correct = noise.flip(torch.tensor(correct, dtype=torch.float32)).tolist()
    if reward.correct_weight != 1.0 or reward.format_weight != 0.0:
        correct = [reward_fns.shaped_reward(c, text, correct_weight=reward.correct_weight,
                                            format_weight=reward.format_weight)
                   for c, text in zip(correct, batch.texts)]
    return torch.tensor(correct, dtype=torch.float32)


@dataclass
class VerifierNoise:
    """A verifier that errs, as real ones do (rl.verifier_noise): each verdict (correctness in [0, 1]) is
    inverted, c -> 1 - c, with probability flip_share, from its own seeded stream (the sampling and
    training streams stay as they are)."""

    flip_share: float
    generator: torch.Generator

    def flip(self, correct: torch.Tensor) -> torch.Tensor:
        flips = torch.rand(correct.shape, generator=self.generator) < self.flip_share
        return torch.where(flips, 1.0 - correct, correct)


@dataclass(frozen=True)
class KeepAllGroups:
    """No filter: one generation round, every group kept."""

    extra_rounds: int = 0

    def keep(self, rewards: torch.Tensor) -> torch.Tensor:
        """[P, G] -> [P] bool: every group."""
        return torch.ones(rewards.shape[0], dtype=torch.bool)


@dataclass(frozen=True)
class InformativeGroups:
    """DAPO's dynamic sampling (Yu et al. 2025, sec. 3.2): a group whose rewards are all equal has zero
    advantage and gives no gradient; drop it, and refill from up to `extra_rounds` more rounds."""

    extra_rounds: int

    def keep(self, rewards: torch.Tensor) -> torch.Tensor:
        """[P, G] -> [P] bool: the groups with a non-zero reward std."""
        return rewards.std(dim=1) > 0


def overlong_penalty(lengths: torch.Tensor, max_len: int, buffer: int, factor: float) -> torch.Tensor:
    """DAPO's soft overlong punishment: 0 up to max_len - buffer, then a linear ramp to -factor."""
    if buffer <= 0:
        return torch.zeros_like(lengths, dtype=torch.float32)
    over = (lengths.float() - (max_len - buffer)).clamp(min=0)
    return -factor * (over / buffer).clamp(max=1.0)


@dataclass(frozen=True)
class OverlongPenalty:
    """DAPO's soft overlong punishment (Yu et al. 2025, sec. 3.4) added to each response's reward."""

    max_len: int
    buffer: int
    factor: float

    def __call__(self, rewards: torch.Tensor, batch: RolloutBatch) -> torch.Tensor:
        lengths = batch.completion_mask.sum(-1).view(-1, rewards.shape[1])
        return rewards + overlong_penalty(lengths, self.max_len, self.buffer, self.factor)


GroupFilter = KeepAllGroups | InformativeGroups
RewardShaping = Callable[[torch.Tensor, RolloutBatch], torch.Tensor]


def shaping_steps(cfg: RLConfig) -> tuple[GroupFilter, list[RewardShaping]]:
    """The group filter and the reward shaping steps the algorithm's effective settings ask for."""
    settings = cfg.effective
    group_filter = InformativeGroups(cfg.dapo.max_resample_rounds) if settings.dynamic_sampling else KeepAllGroups()
    shaping: list[RewardShaping] = []
    if settings.overlong_buffer > 0:
        shaping.append(OverlongPenalty(cfg.max_completion_length, settings.overlong_buffer,
                                       settings.overlong_penalty))
    return group_filter, shaping
