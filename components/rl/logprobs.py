"""Per-token log-probs of completions under the current policy (the differentiable side)."""

from __future__ import annotations

import torch


def completion_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (logprobs [B, Lc], entropy [B, Lc]) of the completion tokens.

    Logits are divided by the sampling temperature so the ratio compares the same distribution
    the rollout engine sampled from.
    """
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attn = torch.cat([prompt_mask, completion_mask], dim=1)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attn, position_ids=positions).logits
    lp = prompt_ids.shape[1]
    logits = logits[:, lp - 1 : -1].float() / temperature
    logp_all = logits.log_softmax(-1)
    logprobs = logp_all.gather(-1, completion_ids[..., None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logprobs, entropy


@torch.no_grad()
def rollout_logprobs(model: torch.nn.Module, batch, micro_batches: list[torch.Tensor],
                     temperature: float) -> torch.Tensor:
    """[B, Lc] log-probs of a RolloutBatch's completions under `model`, one forward pass per
    micro-batch of row indices, without gradient (pi_old recomputed by the trainer, pi_ref)."""
    parts = [completion_logprobs(model, batch.prompt_ids[idx], batch.prompt_mask[idx], batch.completion_ids[idx],
                                 batch.completion_mask[idx], temperature)[0] for idx in micro_batches]
    return torch.cat(parts) if parts else batch.logprobs
