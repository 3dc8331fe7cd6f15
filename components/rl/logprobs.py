"""Per-token log-probs of completions under the current policy (the differentiable side).

Memory is the point of this module. A plain forward keeps logits for every position of every
sequence and a full-vocabulary fp32 log-softmax on top ([B, L, V]: ~170 MB per 288-token sequence
at V = 32 k, ~89 GB of bf16 logits for a 128 x 2,300-token mini-batch at V = 152 k). Here:
  - the model runs to its final hidden states only (`output_hidden_states`, `logits_to_keep=1`);
  - only the positions that predict a real completion token go through the LM head;
  - the head, the fp32 log-softmax and the entropy run in chunks of `chunk_tokens` positions; in
    backward each chunk's logits are rebuilt once and turned into their gradient in place
    (_LinearLogprob; a head that is not a plain nn.Linear, e.g. LoRA-wrapped, is checkpointed instead),
    so about one [chunk, V] fp32 block is alive at a time.
The result equals `reference_completion_logprobs` (the plain formula) to float rounding.
"""

from __future__ import annotations

import logging
import weakref

import torch
from torch.utils.checkpoint import checkpoint

log = logging.getLogger(__name__)

DEFAULT_CHUNK_TOKENS = 256  # params.yaml model.lm_head_chunk_tokens
# Below this many logits (16 MB in fp32) a block is not worth cutting or recomputing: a chunk holds at
# least this many (so the char model's 100-token vocabulary is one unchecked block), at least
# chunk_tokens positions (so a 152 k vocabulary is cut at chunk_tokens).
SMALL_BLOCK_LOGITS = 1 << 22
# Models whose logits are not head(hidden): soft-capped (Gemma 2) or scaled (Cohere, Granite)
# logits. They score through the model's own forward instead (still completion positions only).
_NON_LINEAR_HEAD_ATTRS = ("final_logit_softcapping", "logit_scale", "logits_scaling")
# Per model: whether its logits are lm_head(last hidden state) (probed once; the head module itself
# is looked up on every call, so a LoRA wrap of the head after the probe is still seen).
_HEAD_IS_LINEAR: "weakref.WeakKeyDictionary[torch.nn.Module, bool]" = weakref.WeakKeyDictionary()


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    """The module under DistributedDataParallel (its parameters are the same tensors)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


@torch.no_grad()
def lm_head_of(model: torch.nn.Module) -> torch.nn.Module | None:
    """The module mapping final hidden states to logits, or None when scoring must go through the
    model's own forward (a non-linear head, or one whose logits do not match the model's: checked
    once per model on a 4-token probe, so an architecture this code does not know falls back safely)."""
    inner = _inner(model)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if head is None or _HEAD_IS_LINEAR.get(inner) is False:
        return None
    if inner in _HEAD_IS_LINEAR:
        return head
    config = getattr(inner, "config", None)
    if any(getattr(config, a, None) not in (None, 1.0) for a in _NON_LINEAR_HEAD_ATTRS):
        head = None
    if head is not None:
        device = next(inner.parameters()).device
        ids = torch.arange(4, device=device)[None] % max(1, int(getattr(config, "vocab_size", 4) or 4))
        was_training = inner.training
        inner.eval()
        out = inner(input_ids=ids, output_hidden_states=True, use_cache=False)
        inner.train(was_training)
        direct = out.logits[0].float()
        via_head = head(out.hidden_states[-1][0]).float()
        if not torch.allclose(direct, via_head, rtol=1e-3, atol=1e-3 * max(1.0, float(direct.abs().max()))):
            log.warning("%s: logits are not lm_head(last hidden state); scoring log-probs through the model's "
                        "own forward (more memory)", type(inner).__name__)
            head = None
    _HEAD_IS_LINEAR[inner] = head is not None
    return head


class _LinearLogprob(torch.autograd.Function):
    """log softmax(h W^T + b)[target] / T for one chunk of rows, holding one [rows, V] block at a time.

    Forward keeps only (h, targets, logsumexp); backward rebuilds the block once and turns it into the
    gradient in place: d logp / d logits = (onehot - softmax) / T. A checkpointed plain formula keeps
    about four such blocks alive in backward (logits, softmax, the gather's and the sum's gradients).
    The matmuls run in the dtype autocast gave the forward's (recorded), the softmax in fp32.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, temperature: float):
        logits = torch.nn.functional.linear(h, weight, bias)
        ctx.compute_dtype = logits.dtype
        logits = logits.float() / temperature
        lse = logits.logsumexp(-1)
        logp = logits.gather(-1, targets[:, None]).squeeze(-1) - lse
        ctx.save_for_backward(h, weight, bias, targets, lse)
        ctx.temperature = temperature
        return logp

    @staticmethod
    def backward(ctx, grad_logp):
        h, weight, bias, targets, lse = ctx.saved_tensors
        dtype = ctx.compute_dtype
        block = torch.nn.functional.linear(h.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype))
        block = block.float().div_(ctx.temperature).sub_(lse[:, None]).exp_()  # softmax
        block.scatter_add_(-1, targets[:, None], -torch.ones_like(lse)[:, None])  # softmax - onehot
        block.mul_((-grad_logp / ctx.temperature)[:, None])  # d loss / d logits
        grad = block.to(dtype)
        grad_h = (grad @ weight.to(dtype)).to(h.dtype) if ctx.needs_input_grad[0] else None
        grad_w = (grad.t() @ h.to(dtype)).to(weight.dtype) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0).to(bias.dtype) if bias is not None and ctx.needs_input_grad[2] else None
        return grad_h, grad_w, grad_b, None, None


def _plain_linear(head) -> bool:
    """A head the fused function can take: an nn.Linear itself (a LoRA-wrapped head is not)."""
    return type(head) is torch.nn.Linear


def _fused_token_stats(rows, targets, head, temperature: float, entropy: bool):
    logp = _LinearLogprob.apply(rows, head.weight, head.bias, targets, temperature)
    if not entropy:
        return logp, logp.new_empty(0)
    with torch.no_grad():
        logits = head(rows).float() / temperature
        ent = logits.logsumexp(-1) - (logits.softmax(-1) * logits).sum(-1)
    return logp, ent


def _token_stats(rows: torch.Tensor, targets: torch.Tensor, head: torch.nn.Module | None, temperature: float,
                 entropy: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-prob of each target, entropy or an empty tensor) for [N, H] hidden rows (or [N, V] logits
    when head is None), the distribution being softmax(logits / temperature) in fp32."""
    logits = (rows if head is None else head(rows)).float() / temperature
    lse = logits.logsumexp(-1)
    logp = logits.gather(-1, targets[:, None]).squeeze(-1) - lse
    if not entropy:
        return logp, logp.new_empty(0)
    with torch.no_grad():  # a metric only: no gradient, nothing kept for backward
        ent = lse - (logits.softmax(-1) * logits).sum(-1)
    return logp, ent


def completion_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
    *,
    lm_head: torch.nn.Module | None | str = "auto",
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    entropy: bool = True,
    min_block_logits: int = SMALL_BLOCK_LOGITS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return (logprobs [B, Lc] fp32, entropy [B, Lc] or None) of the completion tokens; 0 where
    completion_mask is 0.

    Logits are divided by the sampling temperature so the ratio compares the same distribution the
    rollout engine sampled from. lm_head: "auto" (lm_head_of(model)), a module, or None to score
    through the model's own logits (sharded models: FSDP/DeepSpeed gather the head only inside forward).
    min_block_logits: see SMALL_BLOCK_LOGITS (tests pass 0 to force chunk_tokens-sized checkpointed chunks).
    """
    head = lm_head_of(model) if lm_head == "auto" else lm_head
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attn = torch.cat([prompt_mask, completion_mask], dim=1)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    lp, lc = prompt_ids.shape[1], completion_ids.shape[1]
    forward = dict(input_ids=input_ids, attention_mask=attn, position_ids=positions, use_cache=False)
    if head is None:  # the model's logits for the lc positions that predict completion tokens (+ the last)
        states = model(**forward, logits_to_keep=lc + 1).logits[:, :-1]
    else:
        states = model(**forward, output_hidden_states=True, logits_to_keep=1).hidden_states[-1][:, lp - 1:-1]
    keep = completion_mask.bool()
    rows, targets = states[keep], completion_ids[keep]
    vocab = rows.shape[-1] if head is None else int(getattr(head, "out_features", 0) or 0)
    # A small vocabulary has no memory to save: its chunks grow to min_block_logits logits, unchecked.
    size = max(chunk_tokens, min_block_logits // vocab) if vocab else chunk_tokens
    grad = torch.is_grad_enabled() and rows.requires_grad and size * max(vocab, 1) > min_block_logits
    logps, ents = [], []
    for lo in range(0, rows.shape[0], size):
        args = (rows[lo:lo + size], targets[lo:lo + size], head, temperature, entropy)
        if grad and _plain_linear(head):  # one block alive in backward
            logp, ent = _fused_token_stats(*args)
        elif grad:  # checkpointed: backward recomputes the chunk's logits instead of keeping them
            logp, ent = checkpoint(_token_stats, *args, use_reentrant=False)
        else:
            logp, ent = _token_stats(*args)
        logps.append(logp)
        ents.append(ent)
    shape = completion_ids.shape
    flat = torch.cat(logps) if logps else rows.new_zeros(0, dtype=torch.float32)
    logprobs = torch.zeros(shape, dtype=torch.float32, device=rows.device).masked_scatter(keep, flat)
    if not entropy:
        return logprobs, None
    flat_ent = torch.cat(ents) if ents else flat.detach()
    return logprobs, torch.zeros(shape, dtype=torch.float32, device=rows.device).masked_scatter(keep, flat_ent)


def reference_completion_logprobs(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                                  temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain formula: full logits for every position, fp32 log-softmax over the vocabulary.
    The definition `completion_logprobs` is tested against (and the memory benchmark's "before");
    never used in training."""
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attn = torch.cat([prompt_mask, completion_mask], dim=1)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attn, position_ids=positions).logits
    logits = logits[:, prompt_ids.shape[1] - 1:-1].float() / temperature
    logp_all = logits.log_softmax(-1)
    logprobs = logp_all.gather(-1, completion_ids[..., None]).squeeze(-1)
    return logprobs, -(logp_all.exp() * logp_all).sum(-1)


@torch.no_grad()
def rollout_logprobs(model: torch.nn.Module, batch, micro_batches: list[torch.Tensor], temperature: float, *,
                     lm_head: torch.nn.Module | None | str = "auto",
                     chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> torch.Tensor:
    """[B, Lc] log-probs of a batch's completions under `model` (pi_old recomputed by the trainer,
    pi_ref), one forward pass per micro-batch of row indices, without gradient. Each micro-batch is
    cut to its own widest prompt and completion, so a token budget bounds the work."""
    from components.rl.batch import trim_padding

    out = torch.zeros(batch.completion_ids.shape, dtype=torch.float32, device=batch.completion_ids.device)
    for idx in micro_batches:
        if len(idx) == 0:
            continue
        p_ids, p_mask, c_ids, c_mask = trim_padding(batch.prompt_ids[idx], batch.prompt_mask[idx],
                                                    batch.completion_ids[idx], batch.completion_mask[idx])
        lp, _ = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, temperature, lm_head=lm_head,
                                    chunk_tokens=chunk_tokens, entropy=False)
        out[idx, :lp.shape[1]] = lp
    return out
