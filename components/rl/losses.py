"""Policy losses, registered by name. Pure functions of per-token tensors.

Shapes: logprobs, old_logprobs, mask: [B, L] (mask 1 on completion tokens); advantages: [B].
Each returns (scalar loss, stats dict of floats).
"""

from __future__ import annotations

from typing import Callable

import torch

POLICY_LOSSES: dict[str, Callable[..., tuple[torch.Tensor, dict[str, float]]]] = {}


def register_policy_loss(name: str):
    def deco(fn):
        POLICY_LOSSES[name] = fn
        return fn

    return deco


def clipped_surrogate(ratio: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float):
    """PPO's sign-aware clipped objective per token, as a loss: -min(rho*A, clip(rho)*A).

    Returns (per-token loss, per-token bool where the clipped branch was taken).
    """
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    return -torch.minimum(unclipped, clipped), clipped < unclipped


def seq_mean_token_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each sequence's tokens, then mean over sequences (GRPO's aggregation)."""
    mask = mask.to(per_token.dtype)
    per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return per_seq.mean()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


@register_policy_loss("grpo")
def grpo_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
):
    """GRPO: token-level ratio, clipped surrogate, token-mean per sequence then sequence-mean."""
    ratio = (logprobs - old_logprobs).exp()
    per_token, was_clipped = clipped_surrogate(ratio, advantages[:, None], eps_low, eps_high)
    loss = seq_mean_token_mean(per_token, mask)
    return loss, {"clip_frac": float(masked_mean(was_clipped.float(), mask))}
