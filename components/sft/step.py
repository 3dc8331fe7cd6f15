"""One SFT optimizer step, memory-bounded: the batch's examples in token-budget micro-batches with
gradient accumulation, the next-token loss through the same chunked LM head as RL's log-probs.

An example is (input_ids, labels) with labels -100 on the prompt. It is laid out as RL lays out a
response: the prompt left-padded, the target (the assistant turn) right-padded, so only target
positions reach the LM head and a micro-batch is cut to its own widest prompt and target. The loss
is the token mean over the whole batch (every process), so the split never changes the update.
"""

from __future__ import annotations

import contextlib

import torch

from components.model.chat import IGNORE
from components.rl.batch import pack_by_tokens
from components.rl.collectives import global_max, global_sums, sharded
from components.rl.logprobs import completion_logprobs, lm_head_of

Example = tuple[list[int], list[int]]


def split_example(example: Example) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids): the target starts at the first label that counts."""
    ids, labels = example
    start = next((i for i, label in enumerate(labels) if label != IGNORE), len(ids))
    if any(label == IGNORE for label in labels[start:]):
        raise ValueError("an SFT example's labels must be -100 on the prompt only, then the whole target")
    return ids[:start], ids[start:]


def layout(examples: list[Example], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    """(prompt_ids, prompt_mask) left-padded and (target_ids, target_mask) right-padded."""
    parts = [split_example(e) for e in examples]
    lp, lt = max(len(p) for p, _ in parts), max(len(t) for _, t in parts)
    p_ids = torch.full((len(parts), lp), pad_id, dtype=torch.long)
    t_ids = torch.full((len(parts), lt), pad_id, dtype=torch.long)
    p_mask, t_mask = torch.zeros_like(p_ids), torch.zeros_like(t_ids)
    for i, (p, t) in enumerate(parts):
        if p:
            p_ids[i, lp - len(p):], p_mask[i, lp - len(p):] = torch.tensor(p), 1
        t_ids[i, :len(t)], t_mask[i, :len(t)] = torch.tensor(t), 1
    return tuple(x.to(device) for x in (p_ids, p_mask, t_ids, t_mask))


class SFTStep:
    """Call with a batch of examples: one optimizer step (the lr schedule is the caller's); returns
    the batch's mean next-token loss (over every process)."""

    def __init__(self, model, optimizer, accelerator, pad_id: int, *, max_tokens: int, max_grad_norm: float,
                 chunk_tokens: int):
        self.model, self.optimizer, self.acc, self.pad_id = model, optimizer, accelerator, pad_id
        self.max_tokens, self.max_grad_norm, self.chunk_tokens = max_tokens, max_grad_norm, chunk_tokens
        self.lm_head = None if sharded(accelerator) else lm_head_of(accelerator.unwrap_model(model))

    def __call__(self, examples: list[Example]) -> float:
        prompt_lengths = torch.tensor([len(split_example(e)[0]) for e in examples])
        target_lengths = torch.tensor([len(e[0]) for e in examples]) - prompt_lengths
        micro = pack_by_tokens(torch.arange(len(examples)), prompt_lengths, target_lengths, self.max_tokens, None)
        world = self.acc.num_processes
        # Every process runs as many backward passes (DDP's all-reduce is a collective), and the loss
        # divides by the target tokens of the whole batch.
        count = global_max(self.acc, len(micro))
        tokens = global_sums(self.acc, [float(target_lengths.sum())])[0]
        normaliser = max(tokens, 1.0) / world
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for i in range(count):
            rows = micro[i].tolist() if i < len(micro) else []
            last = i == count - 1
            with contextlib.nullcontext() if last or world == 1 else self.acc.no_sync(self.model):
                if rows:
                    p_ids, p_mask, t_ids, t_mask = layout([examples[r] for r in rows], self.pad_id, self.acc.device)
                    with self.acc.autocast():
                        lp, _ = completion_logprobs(self.model, p_ids, p_mask, t_ids, t_mask, 1.0, lm_head=self.lm_head,
                                                    chunk_tokens=self.chunk_tokens, entropy=False)
                    loss = -(lp * t_mask).sum() / normaliser
                else:  # keeps DDP's collective calls matched across processes
                    loss = sum(p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad)
                self.acc.backward(loss)
            total += float(loss.detach())
        self.acc.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        return global_sums(self.acc, [total])[0] / world
