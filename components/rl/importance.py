"""Sampler/trainer mismatch: how far the rollout engine's log-probs are from the trainer's, and the
truncated importance-sampling (TIS) weights that correct the policy gradient for it.

With vLLM the tokens are sampled by different kernels (often in another precision) than the ones
the trainer differentiates, so the behaviour policy is pi_sampler, not pi_old. TIS reweights each
token by min(pi_old / pi_sampler, cap): unbiased up to the cap, with bounded variance.
"""

from __future__ import annotations

import torch


def logprob_mismatch(trainer_lp: torch.Tensor, sampler_lp: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean and max |log pi_trainer - log pi_sampler| over completion tokens."""
    m = mask.bool()
    if not bool(m.any()):
        return {"rollout/logprob_diff": 0.0, "rollout/logprob_diff_max": 0.0}
    diff = (trainer_lp - sampler_lp).abs()[m]
    return {"rollout/logprob_diff": float(diff.mean()), "rollout/logprob_diff_max": float(diff.max())}


def truncated_is_weights(trainer_lp: torch.Tensor, sampler_lp: torch.Tensor, mask: torch.Tensor, cap: float,
                         level: str = "token") -> torch.Tensor:
    """[B, L] detached weights min(pi_trainer / pi_sampler, cap); 0 on padding.

    level "sequence" gives every token of a completion the same weight: the capped geometric mean
    of its token ratios (length-normalised, as GSPO normalises its sequence ratio).
    """
    m = mask.to(trainer_lp.dtype)
    log_ratio = (trainer_lp - sampler_lp).detach() * m
    if level == "sequence":
        per_seq = log_ratio.sum(-1) / m.sum(-1).clamp(min=1.0)
        log_ratio = per_seq[:, None].expand_as(log_ratio)
    elif level != "token":
        raise ValueError(f"importance sampling level must be 'token' or 'sequence', got {level!r}")
    return log_ratio.exp().clamp(max=cap) * m
