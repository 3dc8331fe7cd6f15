"""Advantage estimators, registered by name (an algorithm's record names its estimator:
components/config/algorithms). Each is a pure function of a reward tensor.

rewards: [P, G] (P prompt groups of G responses each) -> advantages [P, G], one per response
(outcome rewards: every token of a response gets its response's advantage).
"""

from __future__ import annotations

from typing import Callable

import torch

ADVANTAGES: dict[str, Callable[..., torch.Tensor]] = {}


def register_advantage(name: str):
    def deco(fn):
        ADVANTAGES[name] = fn
        return fn

    return deco


@register_advantage("group_relative")
def group_relative(rewards: torch.Tensor, scale_rewards: bool, eps: float = 1e-6) -> torch.Tensor:
    """GRPO's (Shao et al. 2024, DeepSeekMath): (r - mean_g) / (std_g + eps), std with ddof=1.

    scale_rewards=False drops the division (Dr.GRPO's published setting; TRL's `scale_rewards`); every
    built-in algorithm uses this estimator, with its record's published scale_rewards unless rl.scale_rewards
    is set. A group whose rewards are all equal gets advantage exactly 0 (`centered`), whatever the
    rounding of its mean: the update then skips those rows as carrying no gradient.
    """
    if not scale_rewards:
        return centered(rewards)
    return centered(rewards) / (rewards.std(dim=1, keepdim=True, unbiased=True) + eps)


def centered(rewards: torch.Tensor) -> torch.Tensor:
    """r - mean_g, exactly 0 in a group whose rewards are all equal (a mean of equal non-binary
    rewards, 0.3 say, can round a few ulps off the value itself)."""
    uniform = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)
    return torch.where(uniform, 0.0, rewards - rewards.mean(dim=1, keepdim=True))
