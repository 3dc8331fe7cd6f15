"""Batched sampling with the trainer's own model: KV cache, left padding, EOS stop.

A hand-written decode loop instead of `model.generate`: it returns the log-prob of every sampled
token as a by-product (no second forward pass), stops as soon as every row has hit EOS, and
avoids generate's per-step processor overhead, which dominates for small models on CPU.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache, PreTrainedTokenizerBase

from components.rollout.types import RolloutBatch


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask out the tail of each row's distribution beyond cumulative probability top_p."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    drop = cum - sorted_logits.softmax(-1) > top_p  # keep the token that crosses top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def cache_kwarg(model: torch.nn.Module) -> str:
    """The forward() keyword for the KV cache: `cache` in transformers >= 5.20, `past_key_values`
    before. Models take **kwargs, so a wrong name would be silently ignored (decoding without
    the prompt's context): look it up instead of guessing."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrapper
    params = inspect.signature(base.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    # A wrapper with forward(**kwargs): the installed transformers' name.
    import transformers
    from packaging.version import Version

    return "cache" if Version(transformers.__version__) >= Version("5.20") else "past_key_values"


class HFRolloutEngine:
    """Samples from the live policy module, so it always uses the trainer's current weights."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase):
        self.model = model
        self.tokenizer = tokenizer
        self.cache_arg = cache_kwarg(model)

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Nothing to copy: this engine samples with the trainer's module itself."""

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> RolloutBatch:
        tok = self.tokenizer
        model = self.model
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        enc = tok(prompts, return_tensors="pt", padding=True)
        prompt_ids = enc["input_ids"].to(device)
        prompt_mask = enc["attention_mask"].to(device)
        batch = prompt_ids.shape[0]
        eos, pad = tok.eos_token_id, tok.pad_token_id

        positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions,
                    use_cache=True, **{self.cache_arg: cache})
        logits = out.logits[:, -1].float()
        next_pos = positions[:, -1] + 1
        attn = prompt_mask
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        tokens, logps, alive = [], [], []
        for _ in range(max_new_tokens):
            # The policy is the temperature-scaled distribution: the trainer scores tokens the same way.
            scaled = logits / temperature
            logp_all = scaled.log_softmax(-1)
            if greedy:
                nxt = scaled.argmax(-1)
            else:
                probs = _top_p_filter(scaled, top_p).softmax(-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            lp = logp_all.gather(-1, nxt[:, None]).squeeze(-1)
            alive.append(~finished)
            tokens.append(torch.where(finished, torch.full_like(nxt, pad), nxt))
            logps.append(torch.where(finished, torch.zeros_like(lp), lp))
            finished = finished | (nxt == eos)
            if bool(finished.all()):
                break
            attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
            out = model(input_ids=tokens[-1][:, None], attention_mask=attn, position_ids=next_pos[:, None],
                        use_cache=True, **{self.cache_arg: cache})
            next_pos = next_pos + 1
            logits = out.logits[:, -1].float()
        model.train(was_training)

        completion_ids = torch.stack(tokens, 1)
        completion_mask = torch.stack(alive, 1).long()
        texts = tok.batch_decode(completion_ids, skip_special_tokens=True)
        return RolloutBatch(
            prompts=list(prompts),
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            completion_ids=completion_ids,
            completion_mask=completion_mask,
            logprobs=torch.stack(logps, 1),
            truncated=~finished,
            texts=texts,
        )
