"""Policy losses, registered by name. Pure functions of per-token tensors.

Shapes: logprobs, old_logprobs, mask: [B, L] (mask 1 on completion tokens that count);
advantages: [B] (one per response). Each returns (scalar loss, stats dict of floats).
Every loss takes the same keyword arguments, all explicit (the values come from the config):
`eps_low`, `eps_high`: the clip range 1 - eps_low .. 1 + eps_high (rl.epsilon, rl.epsilon_high);
`max_len`: the configured max completion length (Dr.GRPO's constant normaliser);
`surrogate`: "standard" (sign-aware PPO clip) or "authors" (PIPO's PI step, rl.pipo.pi_clip_mode);
`is_weights` ([B, L] or None): truncated importance-sampling weights for a sampler/trainer
mismatch (components/rl/importance.py); they multiply each token's (or sequence's) loss.
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
    """PPO's sign-aware clipped objective as a loss: -min(rho*A, clip(rho, 1-eps_low, 1+eps_high)*A).

    Returns (per-element loss, bool where the clipped branch was taken).
    """
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    return -torch.minimum(unclipped, clipped), clipped < unclipped


def authors_surrogate(ratio: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float):
    """The PIPO authors' GRPO variant: -min(rho, clip(rho)) * A (unbounded below for A < 0)."""
    clipped_ratio = ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    return -torch.minimum(ratio, clipped_ratio) * adv, clipped_ratio < ratio


SURROGATES = {"standard": clipped_surrogate, "authors": authors_surrogate}


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def seq_mean_token_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each sequence's tokens, then mean over sequences (GRPO)."""
    mask = mask.to(per_token.dtype)
    per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return per_seq.mean()


def seq_sum_constant_norm(per_token: torch.Tensor, mask: torch.Tensor, max_len: int) -> torch.Tensor:
    """Sum over tokens / (batch size * max completion length) (Dr.GRPO: no length bias)."""
    return (per_token * mask.to(per_token.dtype)).sum() / (per_token.shape[0] * max_len)


def _token_ratio_loss(aggregate, logprobs, old_logprobs, advantages, mask, eps_low, eps_high, surrogate,
                      is_weights):
    ratio = (logprobs - old_logprobs).exp()
    per_token, was_clipped = SURROGATES[surrogate](ratio, advantages[:, None], eps_low, eps_high)
    if is_weights is not None:
        per_token = per_token * is_weights
    return aggregate(per_token, mask), {"clip_frac": float(masked_mean(was_clipped.float(), mask))}


@register_policy_loss("grpo")
def grpo_loss(logprobs, old_logprobs, advantages, mask, *, eps_low, eps_high, max_len, surrogate,
              is_weights=None):
    """GRPO: token-level ratio, clipped surrogate, token-mean per sequence then sequence-mean."""
    return _token_ratio_loss(seq_mean_token_mean, logprobs, old_logprobs, advantages, mask, eps_low, eps_high,
                             surrogate, is_weights)


@register_policy_loss("dr_grpo")
def dr_grpo_loss(logprobs, old_logprobs, advantages, mask, *, eps_low, eps_high, max_len, surrogate,
                 is_weights=None):
    """Dr.GRPO: token-level ratio; sum over tokens / (batch size * max completion length)."""
    if not max_len:
        raise ValueError("dr_grpo_loss needs max_len (the configured max completion length)")
    return _token_ratio_loss(lambda x, m: seq_sum_constant_norm(x, m, max_len), logprobs, old_logprobs,
                             advantages, mask, eps_low, eps_high, surrogate, is_weights)


@register_policy_loss("dapo")
def dapo_loss(logprobs, old_logprobs, advantages, mask, *, eps_low, eps_high, max_len, surrogate,
              is_weights=None):
    """DAPO (Yu et al. 2025): token-level ratio with clip-higher; token-mean over the whole batch."""
    return _token_ratio_loss(masked_mean, logprobs, old_logprobs, advantages, mask, eps_low, eps_high, surrogate,
                             is_weights)


@register_policy_loss("gspo")
def gspo_loss(logprobs, old_logprobs, advantages, mask, *, eps_low, eps_high, max_len, surrogate,
              is_weights=None):
    """GSPO (Zheng et al. 2025): sequence ratio s = exp(mean_t log(pi/pi_old)), clipped per sequence."""
    m = mask.to(logprobs.dtype)
    seq_log_ratio = ((logprobs - old_logprobs) * m).sum(-1) / m.sum(-1).clamp(min=1.0)
    per_seq, was_clipped = SURROGATES[surrogate](seq_log_ratio.exp(), advantages, eps_low, eps_high)
    if is_weights is not None:  # one weight per sequence: the masked mean of its token weights
        per_seq = per_seq * (is_weights * m).sum(-1) / m.sum(-1).clamp(min=1.0)
    has_tokens = (m.sum(-1) > 0).to(per_seq.dtype)
    loss = (per_seq * has_tokens).sum() / has_tokens.sum().clamp(min=1.0)
    return loss, {"clip_frac": float((was_clipped.float() * has_tokens).sum() / has_tokens.sum().clamp(min=1.0))}


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(pi || pi_ref) by the k3 estimator exp(d) - d - 1, d = log pi_ref - log pi (Schulman, "Approximating
    KL divergence"; verl's "low_var_kl"): non-negative per token. Token-mean per sequence, then mean."""
    delta = ref_logprobs - logprobs
    return seq_mean_token_mean(delta.exp() - delta - 1.0, mask)
