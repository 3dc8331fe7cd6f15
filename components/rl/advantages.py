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

    A group whose rewards are all equal gets advantage 0 (its std is 0, the numerator is 0).
    scale_rewards=False drops the division (TRL's `scale_rewards`). DAPO and GSPO use this too.
    """
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale_rewards:
        return centered
    return centered / (rewards.std(dim=1, keepdim=True, unbiased=True) + eps)


@register_advantage("dr_grpo")
def dr_grpo_advantages(rewards: torch.Tensor, scale_rewards: bool = False, eps: float = 1e-6) -> torch.Tensor:
    """Dr.GRPO (Liu et al. 2025, "Understanding R1-Zero-like training"): r - mean_g, no std division.

    The std normalisation is what Dr.GRPO removes (it over-weights near-uniform groups), so
    scale_rewards is ignored here.
    """
    return rewards - rewards.mean(dim=1, keepdim=True)


ADVANTAGES["dapo"] = grpo_advantages
ADVANTAGES["gspo"] = grpo_advantages
