"""Batched sampling with the trainer's own model: KV cache, left padding, stop at the end of a turn.

A hand-written decode loop instead of `model.generate`: it returns the log-prob of every sampled
token as a by-product (no second forward pass), and it does less work per token:
- finished rows leave the batch (the KV cache, mask and positions are compacted once a quarter of
  the rows have stopped), so later steps compute only the rows still generating;
- one uniform number per row and step drives inverse-CDF sampling (torch.multinomial draws an
  exponential per vocabulary entry). The numbers are drawn for the whole batch every step, so a
  row's tokens do not depend on which other rows are still in the batch;
- on CPU the decode steps use eager attention (`decode_attention`), and the thread count follows
  measured speed (components/infra/threads.py): a step of a small model is many tiny ops, which
  stall whenever another process holds one of their threads' cores (on the tiny default with a
  busy process on the other core: 2 threads 3x slower than quiet, 1 thread barely slower;
  benchmarks/rollout_throughput.py --busy).
"""

from __future__ import annotations

import contextlib
import inspect

import torch
from transformers import PreTrainedTokenizerBase, StaticCache

from components.infra.threads import ThreadChooser, torch_threads
from components.model.chat import stop_token_ids
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


def sample_inverse_cdf(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One token per row of probs [b, V], from uniform [b] in [0, 1): the first index whose cumulative
    probability exceeds u * total. A zero-probability token (filtered by top-p) can never be drawn."""
    cdf = probs.cumsum(-1)
    target = (uniform * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


# Compact the batch when a quarter of its rows have stopped: each compaction copies the KV cache once.
COMPACT_WHEN_ALIVE_BELOW = 0.75


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


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether forward() takes `logits_to_keep` by name (HF causal LMs do): with it the prefill computes
    the LM head for the last position only, never the prompt's full [B, Lp, V] logits."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrapper
    return "logits_to_keep" in inspect.signature(base.forward).parameters


class HFRolloutEngine:
    """Samples from the live policy module, so it always uses the trainer's current weights.

    Prompts are rendered text (components.model.chat), tokenized without adding special tokens. A row
    stops at any of `stop_ids`: by default chat.stop_token_ids(model, tokenizer), i.e. the model's
    end-of-turn ids as well as the tokenizer's EOS; [] samples every row to max_new_tokens."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase,
                 stop_ids: list[int] | None = None, *, decode_threads: int | None = None, compact: bool = True):
        """decode_threads: torch threads while decoding (None: 1 or torch's count, whichever measures
        faster; float rounding of the log-probs then varies with the choice, ~1e-6). compact:
        finished rows leave the batch."""
        self.model = model
        self.tokenizer = tokenizer
        self.cache_arg = cache_kwarg(model)
        self.prefill_kwargs = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}
        self.stop_ids = list(stop_token_ids(model, tokenizer) if stop_ids is None else stop_ids)
        self.decode_threads, self.compact = decode_threads, compact
        self.on_cpu = next(model.parameters()).device.type == "cpu"  # a GPU's kernels do not use these threads
        self.threads = ThreadChooser() if decode_threads is None and self.on_cpu else None

    @contextlib.contextmanager
    def decode_attention(self):
        """Eager attention for the one-token decode steps on CPU, where torch's SDPA kernel costs more than
        the [rows, heads, 1, length] products it computes (tiny default: 0.252 vs 0.288 s per rollout,
        interleaved). The prefill keeps SDPA: eager would build [rows, heads, Lp, Lp] score matrices."""
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        switch = self.on_cpu and getattr(base.config, "_attn_implementation", None) == "sdpa" and \
            hasattr(base, "set_attn_implementation")
        if not switch:
            yield
            return
        base.set_attn_implementation("eager")
        try:
            yield
        finally:
            base.set_attn_implementation("sdpa")

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Nothing to copy: this engine samples with the trainer's module itself."""

    def generate(self, prompts: list[str], max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                 greedy: bool = False, generator: torch.Generator | None = None) -> RolloutBatch:
        if self.threads is None:
            with torch_threads(self.decode_threads) if self.decode_threads else contextlib.nullcontext():
                return self._generate(prompts, max_new_tokens, temperature, top_p, greedy, generator)
        with self.threads.run() as work:
            batch = self._generate(prompts, max_new_tokens, temperature, top_p, greedy, generator)
            work.append(batch.num_completion_tokens)
        return batch

    @torch.no_grad()
    def _generate(self, prompts: list[str], max_new_tokens: int, temperature: float, top_p: float, greedy: bool,
                  generator: torch.Generator | None) -> RolloutBatch:
        """Prefill the prompts into a KV cache, then decode one token per step for every row."""
        tok, model = self.tokenizer, self.model
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        prompt_ids, prompt_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        cache, attn, logits, next_pos = self._prefill(prompt_ids, prompt_mask, max_new_tokens)
        tokens, logps, alive, finished, steps = self._decode(cache, attn, logits, next_pos, prompt_ids.shape[1],
                                                             max_new_tokens, temperature, top_p, greedy, generator)
        model.train(was_training)
        completion_ids = tokens[:, :steps].clone()
        return RolloutBatch(prompts=list(prompts), prompt_ids=prompt_ids, prompt_mask=prompt_mask,
                            completion_ids=completion_ids, completion_mask=alive[:, :steps].long(),
                            logprobs=logps[:, :steps].clone(), truncated=~finished,
                            texts=tok.batch_decode(completion_ids, skip_special_tokens=True))

    def _prefill(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, max_new_tokens: int):
        """One forward pass over the left-padded prompts. Returns the KV cache, the full-length attention
        mask, the last position's logits and each row's next position."""
        batch, prompt_len = prompt_ids.shape
        positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        # A KV cache allocated once for prompt + max_new_tokens: a cache grown by concatenation
        # reallocates every layer's keys and values at every step, and the freed blocks of growing
        # size fragment the heap (256 x 256 tokens of a 12 M model: 2.3-5.9 GB of RSS; 0.95 GB with
        # nothing growing). `cache_position` says where each step writes.
        cache = StaticCache(config=self.model.config, max_cache_len=prompt_len + max_new_tokens)
        # The mask too is built once at full length (causality hides the columns not yet written): a
        # mask grown by one column per step is another growing allocation.
        attn = torch.cat([prompt_mask, prompt_mask.new_ones(batch, max_new_tokens)], dim=1)
        # Left padding puts every prompt's last token in the last column: the only logits needed.
        out = self.model(input_ids=prompt_ids, attention_mask=attn, position_ids=positions, use_cache=True,
                         cache_position=torch.arange(prompt_len, device=prompt_ids.device),
                         **{self.cache_arg: cache}, **self.prefill_kwargs)
        return cache, attn, out.logits[:, -1].float(), positions[:, -1] + 1

    def _decode(self, cache, attn: torch.Tensor, logits: torch.Tensor, next_pos: torch.Tensor, write_at: int,
                max_new_tokens: int, temperature: float, top_p: float, greedy: bool,
                generator: torch.Generator | None):
        """Sample until every row stops or max_new_tokens. Returns tokens, their log-probs and the mask
        of tokens sampled ([batch, max_new_tokens] each), which rows stopped, and the steps taken."""
        batch, device, pad = logits.shape[0], logits.device, self.tokenizer.pad_token_id
        stop = torch.tensor(self.stop_ids, dtype=torch.long, device=device)
        # rows: the batch rows still in the decode batch; done: which of them have stopped
        rows = torch.arange(batch, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        compactable = self.compact and all(hasattr(layer, "keys") for layer in getattr(cache, "layers", [None]))
        # Outputs written in place: a few small tensors kept per step would each pin a block of the
        # heap between the step's large transient ones (logits), and the heap would only grow.
        tokens = torch.full((batch, max_new_tokens), pad, dtype=torch.long, device=device)
        logps = torch.zeros((batch, max_new_tokens), dtype=torch.float32, device=device)
        alive = torch.zeros((batch, max_new_tokens), dtype=torch.bool, device=device)
        steps = 0
        with self.decode_attention():  # one query per row: eager attention is faster on CPU
            for step in range(max_new_tokens):
                # The policy is the temperature-scaled distribution: the trainer scores tokens the same way.
                scaled = logits / temperature
                if greedy:
                    nxt = scaled.argmax(-1)
                else:  # drawn for every row of the batch, so compaction does not shift anyone's numbers
                    uniform = torch.rand(batch, generator=generator, device=device)[rows]
                    nxt = sample_inverse_cdf(_top_p_filter(scaled, top_p).softmax(-1), uniform)
                lp = scaled.log_softmax(-1).gather(-1, nxt[:, None]).squeeze(-1)
                live = rows[~done]
                alive[live, step], tokens[live, step], logps[live, step] = True, nxt[~done], lp[~done]
                done |= torch.isin(nxt, stop)
                steps = step + 1
                if bool(done.all()):
                    break
                if compactable and int((~done).sum()) < COMPACT_WHEN_ALIVE_BELOW * len(rows):
                    keep = (~done).nonzero().squeeze(-1)
                    finished[rows[done]] = True
                    cache.reorder_cache(keep)  # every layer's keys and values, rows `keep` only
                    rows, nxt, attn, next_pos, done = rows[keep], nxt[keep], attn[keep], next_pos[keep], done[keep]
                out = self.model(input_ids=torch.where(done, pad, nxt)[:, None], attention_mask=attn,
                                 position_ids=next_pos[:, None], use_cache=True,
                                 cache_position=torch.tensor([write_at], device=device), **{self.cache_arg: cache})
                next_pos, write_at = next_pos + 1, write_at + 1
                logits = out.logits[:, -1].float()
        finished[rows[done]] = True
        return tokens, logps, alive, finished, steps
