"""Policy losses, registered by name. Pure functions of per-token tensors.

Shapes: logprobs, old_logprobs, mask: [B, L] (mask 1 on completion tokens that count);
advantages: [B] (one per response). Each returns (scalar loss, stats dict of floats).
Every loss takes the same keyword arguments, all explicit (the values come from the config):
`eps_low`, `eps_high`: the clip range 1 - eps_low .. 1 + eps_high (rl.epsilon, rl.epsilon_high);
`max_len`: the configured max completion length (Dr.GRPO's constant normaliser);
`surrogate`: "standard" (sign-aware PPO clip) or "authors" (PIPO's PI step, rl.pipo.pi_clip_mode);
`is_weights` ([B, L] or None): truncated importance-sampling weights for a sampler/trainer
mismatch (components/rl/importance.py); they multiply each token's (or sequence's) loss.
`normaliser` (float or None): the loss's denominator. None: this batch's own (the loss of the batch
alone). Gradient accumulation passes the whole mini-batch's (over every process), from
`LOSS_NORMALISERS`, so micro-batch losses sum to exactly the mini-batch loss whatever the split.
"""

from __future__ import annotations

from typing import Callable

import torch

POLICY_LOSSES: dict[str, Callable[..., tuple[torch.Tensor, dict[str, float]]]] = {}
# name -> fn(loss_mask [B, L], max_len) -> the loss's denominator over those rows
LOSS_NORMALISERS: dict[str, Callable[[torch.Tensor, int], float]] = {}


def sequences(mask: torch.Tensor, max_len: int) -> float:
    """Seq-mean aggregations: the number of sequences."""
    return float(mask.shape[0])


def tokens(mask: torch.Tensor, max_len: int) -> float:
    """Token-mean aggregation: the number of tokens the loss counts."""
    return float(mask.sum())


def sequences_times_max_len(mask: torch.Tensor, max_len: int) -> float:
    """Dr.GRPO's constant: sequences x the configured max completion length."""
    return float(mask.shape[0] * max_len)


def sequences_with_tokens(mask: torch.Tensor, max_len: int) -> float:
    """GSPO's sequence mean: the sequences that have at least one counted token."""
    return float((mask.sum(-1) > 0).sum())


def register_policy_loss(name: str, normaliser: Callable[[torch.Tensor, int], float]):
    def deco(fn):
        POLICY_LOSSES[name] = fn
        LOSS_NORMALISERS[name] = normaliser
        return fn

    return deco


def _divide(total: torch.Tensor, normaliser: float | None, own: float) -> torch.Tensor:
    return total / max(own if normaliser is None else normaliser, 1.0)


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


def seq_mean_token_mean(per_token: torch.Tensor, mask: torch.Tensor, normaliser: float | None = None) -> torch.Tensor:
    """Mean over each sequence's tokens, then mean over sequences (GRPO)."""
    mask = mask.to(per_token.dtype)
    per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return _divide(per_seq.sum(), normaliser, sequences(mask, 0))


def _token_ratio_loss(name, logprobs, old_logprobs, advantages, mask, eps_low, eps_high, max_len, surrogate,
                      is_weights, normaliser):
    ratio = (logprobs - old_logprobs).exp()
    per_token, was_clipped = SURROGATES[surrogate](ratio, advantages[:, None], eps_low, eps_high)
    if is_weights is not None:
        per_token = per_token * is_weights
    m = mask.to(per_token.dtype)
    if name == "grpo":  # each sequence's token mean, summed over sequences
        total = ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1.0)).sum()
    else:  # every counted token, summed
        total = (per_token * m).sum()
    loss = _divide(total, normaliser, LOSS_NORMALISERS[name](mask, max_len))
    return loss, {"clip_frac": float(masked_mean(was_clipped.float(), mask))}


@register_policy_loss("grpo", normaliser=sequences)
def grpo_loss(logprobs, old_logprobs, advantages, mask, *, eps_low, eps_high, max_len, surrogate,
              is_weights=None, normaliser=None):
    """GRPO: token-level ratio, clipped surrogate, token-mean per sequence then sequence-mean."""
    return _token_ratio_loss("grpo", logprobs, old_logprobs, advantages, mask, eps_low, eps_high, max_len,
                             surrogate, is_weights, normaliser)


@register_policy_loss("dr_grpo", normaliser=sequences_times_max_len)
def dr_grpo_loss(logprobs, old_logprobs, advantages, mask, *, eps_low, eps_high, max_len, surrogate,
                 is_weights=None, normaliser=None):
    """Dr.GRPO: token-level ratio; sum over tokens / (batch size * max completion length)."""
    if not max_len:
        raise ValueError("dr_grpo_loss needs max_len (the configured max completion length)")
    return _token_ratio_loss("dr_grpo", logprobs, old_logprobs, advantages, mask, eps_low, eps_high, max_len,
                             surrogate, is_weights, normaliser)


@register_policy_loss("dapo", normaliser=tokens)
def dapo_loss(logprobs, old_logprobs, advantages, mask, *, eps_low, eps_high, max_len, surrogate,
              is_weights=None, normaliser=None):
    """DAPO (Yu et al. 2025): token-level ratio with clip-higher; token-mean over the whole batch."""
    return _token_ratio_loss("dapo", logprobs, old_logprobs, advantages, mask, eps_low, eps_high, max_len,
                             surrogate, is_weights, normaliser)


@register_policy_loss("gspo", normaliser=sequences_with_tokens)
def gspo_loss(logprobs, old_logprobs, advantages, mask, *, eps_low, eps_high, max_len, surrogate,
              is_weights=None, normaliser=None):
    """GSPO (Zheng et al. 2025): sequence ratio s = exp(mean_t log(pi/pi_old)), clipped per sequence."""
    m = mask.to(logprobs.dtype)
    seq_log_ratio = ((logprobs - old_logprobs) * m).sum(-1) / m.sum(-1).clamp(min=1.0)
    per_seq, was_clipped = SURROGATES[surrogate](seq_log_ratio.exp(), advantages, eps_low, eps_high)
    if is_weights is not None:  # one weight per sequence: the masked mean of its token weights
        per_seq = per_seq * (is_weights * m).sum(-1) / m.sum(-1).clamp(min=1.0)
    has_tokens = (m.sum(-1) > 0).to(per_seq.dtype)
    loss = _divide((per_seq * has_tokens).sum(), normaliser, sequences_with_tokens(mask, max_len))
    return loss, {"clip_frac": float((was_clipped.float() * has_tokens).sum() / has_tokens.sum().clamp(min=1.0))}


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
          normaliser: float | None = None) -> torch.Tensor:
    """KL(pi || pi_ref) by the k3 estimator exp(d) - d - 1, d = log pi_ref - log pi (Schulman, "Approximating
    KL divergence"; verl's "low_var_kl"): non-negative per token. Token-mean per sequence, then mean
    over sequences (normaliser: the sequence count it divides by, as for the policy loss)."""
    delta = ref_logprobs - logprobs
    return seq_mean_token_mean(delta.exp() - delta - 1.0, mask, normaliser)
