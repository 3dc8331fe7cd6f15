"""Advantage estimators, registered by name. Each is a pure function of a reward tensor.

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


@register_advantage("grpo")
def grpo_advantages(rewards: torch.Tensor, scale_rewards: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO (Shao et al. 2024, DeepSeekMath): (r - mean_g) / (std_g + eps), std with ddof=1.

    A group whose rewards are all equal gets advantage exactly 0 (`centered`), whatever the rounding
    of its mean: the update then skips those rows as carrying no gradient.
    scale_rewards=False drops the division (TRL's `scale_rewards`). DAPO and GSPO use this too.
    """
    if not scale_rewards:
        return centered(rewards)
    return centered(rewards) / (rewards.std(dim=1, keepdim=True, unbiased=True) + eps)


def centered(rewards: torch.Tensor) -> torch.Tensor:
    """r - mean_g, exactly 0 in a group whose rewards are all equal (a mean of equal non-binary
    rewards, 0.3 say, can round a few ulps off the value itself)."""
    uniform = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)
    return torch.where(uniform, 0.0, rewards - rewards.mean(dim=1, keepdim=True))


@register_advantage("dr_grpo")
def dr_grpo_advantages(rewards: torch.Tensor, scale_rewards: bool = False, eps: float = 1e-6) -> torch.Tensor:
    """Dr.GRPO (Liu et al. 2025, "Understanding R1-Zero-like training"): r - mean_g, no std division.

    The std normalisation is what Dr.GRPO removes (it over-weights near-uniform groups): its published
    setting (rl.algorithm_defaults.dr_grpo.scale_rewards false); an explicit rl.scale_rewards true puts it back.
    """
    return grpo_advantages(rewards, scale_rewards=scale_rewards, eps=eps)


ADVANTAGES["dapo"] = grpo_advantages
ADVANTAGES["gspo"] = grpo_advantages
