"""Policy losses and their aggregations, registered by name (an algorithm's record names one of each:
components/config/algorithms). Pure functions of per-token tensors.

Shapes: logprobs, old_logprobs, mask: [B, L] (mask 1 on completion tokens that count);
advantages: [B] (one per response). A policy loss returns (scalar loss, stats dict of floats).
Every loss takes the same keyword arguments, all explicit (the values come from the config):
`eps_low`, `eps_high`: the clip range 1 - eps_low .. 1 + eps_high (rl.epsilon, rl.epsilon_high);
`max_len`: the configured max completion length (Dr.GRPO's constant normaliser);
`surrogate`: "standard" (sign-aware PPO clip) or "authors" (PIPO's PI step, rl.pipo.pi_clip_mode);
`aggregation`: how per-token (or per-sequence) losses become one (`AGGREGATIONS`);
`is_weights` ([B, L] or None): truncated importance-sampling weights for a sampler/trainer
mismatch (components/rl/importance.py); they multiply each token's (or sequence's) loss.
`normaliser` (float or None): the loss's denominator. None: this batch's own (the loss of the batch
alone). Gradient accumulation passes the whole mini-batch's (over every process), from the
aggregation's `normaliser`, so micro-batch losses sum to exactly the mini-batch loss whatever the split.
`algorithm_loss(record)` is an algorithm's loss with its aggregation bound: what the update calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from components.config.algorithms import Algorithm

POLICY_LOSSES: dict[str, Callable[..., tuple[torch.Tensor, dict[str, float]]]] = {}
POLICY_LOSS_LEVEL: dict[str, str] = {}  # name -> "token" or "sequence": what its aggregation receives


def sequences(mask: torch.Tensor, max_len: int) -> float:
    """Seq-mean aggregations: the number of sequences."""
    return float(mask.shape[0])


def tokens(mask: torch.Tensor, max_len: int) -> float:
    """Token-mean aggregation: the number of tokens the loss counts."""
    return float(mask.sum())


def sequences_times_max_len(mask: torch.Tensor, max_len: int) -> float:
    """Dr.GRPO's constant: sequences x the configured max completion length."""
    if not max_len:
        raise ValueError("the seq-mean-token-sum-norm aggregation needs max_len (the configured max completion length)")
    return float(mask.shape[0] * max_len)


def sequences_with_tokens(mask: torch.Tensor, max_len: int) -> float:
    """GSPO's sequence mean: the sequences that have at least one counted token."""
    return float((mask.sum(-1) > 0).sum())


def _sum_of_token_means(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(per_token.dtype)
    return ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1.0)).sum()


def _token_sum(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (per_token * mask.to(per_token.dtype)).sum()


def _sequence_sum(per_seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    has_tokens = (mask.to(per_seq.dtype).sum(-1) > 0).to(per_seq.dtype)
    return (per_seq * has_tokens).sum()


@dataclass(frozen=True)
class Aggregation:
    """How a loss's per-token ([B, L], level "token") or per-sequence ([B], level "sequence") values become
    one: their `total` over the mask, divided by the `normaliser` (of the loss mask and max_len)."""

    level: str
    total: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    normaliser: Callable[[torch.Tensor, int], float]


# The keys are components/config/algorithms AGGREGATIONS' (verl's loss_agg_mode names), described there.
AGGREGATIONS = {
    "seq-mean-token-mean": Aggregation("token", _sum_of_token_means, sequences),  # GRPO
    "seq-mean-token-sum-norm": Aggregation("token", _token_sum, sequences_times_max_len),  # Dr.GRPO
    "token-mean": Aggregation("token", _token_sum, tokens),  # DAPO
    "seq-mean": Aggregation("sequence", _sequence_sum, sequences_with_tokens),  # GSPO
}


def register_policy_loss(name: str, level: str):
    def deco(fn):
        POLICY_LOSSES[name] = fn
        POLICY_LOSS_LEVEL[name] = level
        return fn

    return deco


def algorithm_loss(record: Algorithm) -> Callable[..., tuple[torch.Tensor, dict[str, float]]]:
    """The record's policy loss with its aggregation bound (the update calls it with the other keywords)."""
    aggregation = AGGREGATIONS[record.aggregation]
    if POLICY_LOSS_LEVEL[record.policy_loss] != aggregation.level:
        raise ValueError(f"algorithm {record.name!r}: policy loss {record.policy_loss!r} gives "
                         f"{POLICY_LOSS_LEVEL[record.policy_loss]} values, aggregation {record.aggregation!r} "
                         f"takes {aggregation.level} values")
    return partial(POLICY_LOSSES[record.policy_loss], aggregation=aggregation)


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


@register_policy_loss("token_ratio", level="token")
def token_ratio_loss(logprobs, old_logprobs, advantages, mask, *, eps_low, eps_high, max_len, surrogate,
                     aggregation: Aggregation, is_weights=None, normaliser=None):
    """Token-level ratio pi/pi_old, clipped surrogate per token (GRPO, Dr.GRPO, DAPO: they differ in
    their aggregation and clip range)."""
    ratio = (logprobs - old_logprobs).exp()
    per_token, was_clipped = SURROGATES[surrogate](ratio, advantages[:, None], eps_low, eps_high)
    if is_weights is not None:
        per_token = per_token * is_weights
    loss = _divide(aggregation.total(per_token, mask), normaliser, aggregation.normaliser(mask, max_len))
    return loss, {"clip_frac": float(masked_mean(was_clipped.float(), mask))}


@register_policy_loss("sequence_ratio", level="sequence")
def sequence_ratio_loss(logprobs, old_logprobs, advantages, mask, *, eps_low, eps_high, max_len, surrogate,
                        aggregation: Aggregation, is_weights=None, normaliser=None):
    """GSPO (Zheng et al. 2025): sequence ratio s = exp(mean_t log(pi/pi_old)), clipped per sequence."""
    m = mask.to(logprobs.dtype)
    seq_log_ratio = ((logprobs - old_logprobs) * m).sum(-1) / m.sum(-1).clamp(min=1.0)
    per_seq, was_clipped = SURROGATES[surrogate](seq_log_ratio.exp(), advantages, eps_low, eps_high)
    if is_weights is not None:  # one weight per sequence: the masked mean of its token weights
        per_seq = per_seq * (is_weights * m).sum(-1) / m.sum(-1).clamp(min=1.0)
    has_tokens = (m.sum(-1) > 0).to(per_seq.dtype)
    loss = _divide(aggregation.total(per_seq, mask), normaliser, aggregation.normaliser(mask, max_len))
    return loss, {"clip_frac": float((was_clipped.float() * has_tokens).sum() / has_tokens.sum().clamp(min=1.0))}


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
          normaliser: float | None = None) -> torch.Tensor:
    """KL(pi || pi_ref) by the k3 estimator exp(d) - d - 1, d = log pi_ref - log pi (Schulman, "Approximating
    KL divergence"; verl's "low_var_kl"): non-negative per token. Token-mean per sequence, then mean
    over sequences (normaliser: the sequence count it divides by, as for the policy loss)."""
    delta = ref_logprobs - logprobs
    return seq_mean_token_mean(delta.exp() - delta - 1.0, mask, normaliser)
