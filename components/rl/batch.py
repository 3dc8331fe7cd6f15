"""What an update trains on, and how it is cut into optimizer steps and micro-batches.

`TrainingBatch` is the one batch type of both updates: the base update on B_t and PIPO's PI step on
B_{t-1} (the cached TrainingBatch with the PI coefficients c_i in place of the advantages).
`MicroBatches` is the one place that decides which rows go into which optimizer step, and how a
step is cut into micro-batches under a token budget (gradient accumulation: components/rl/update.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Callable

import torch


@dataclass(frozen=True)
class TrainingBatch:
    """B responses as a policy-gradient update sees them, row-aligned.

    prompt_ids, prompt_mask:         [B, Lp] left-padded
    completion_ids, completion_mask: [B, Lc] right-padded (mask 1 on generated tokens)
    loss_mask:    [B, Lc] float, the tokens the loss counts: the completion mask, 0 for truncated
                  completions when rl.mask_truncated_completions
    old_logprobs: [B, Lc] log pi_old, the denominator of the PPO ratio
    advantages:   [B] each response's weight in the gradient: the base advantage A_i in the base
                  update, the PI coefficient c_i in the PI step (PIPO caches the attribution a_i here)
    ref_logprobs: [B, Lc] under the frozen reference policy (rl.beta > 0), else None
    is_weights:   [B, Lc] truncated importance weights pi_old / pi_sampler (rollout.importance_sampling),
                  else None
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    loss_mask: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor
    ref_logprobs: torch.Tensor | None = None
    is_weights: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.prompt_ids.shape[0]

    def rows(self, idx: torch.Tensor) -> "TrainingBatch":
        """The rows `idx` (a 1-D index tensor) of every tensor."""
        return TrainingBatch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[idx]
                                for f in fields(self)})

    def micro_batch(self, idx: torch.Tensor) -> "TrainingBatch":
        """The rows `idx`, cut to their own widest prompt and completion (the columns a forward pass needs)."""
        mb = self.rows(idx)
        lp, lc = mb.prompt_ids.shape[1], mb.completion_ids.shape[1]
        p_ids, p_mask, c_ids, c_mask = trim_padding(mb.prompt_ids, mb.prompt_mask, mb.completion_ids,
                                                    mb.completion_mask)
        keep_p, keep_c = p_ids.shape[1], c_ids.shape[1]
        if (keep_p, keep_c) == (lp, lc):
            return mb
        return replace(mb, prompt_ids=p_ids, prompt_mask=p_mask, completion_ids=c_ids, completion_mask=c_mask,
                       **{name: None if getattr(mb, name) is None else getattr(mb, name)[:, :keep_c]
                          for name in ("loss_mask", "old_logprobs", "ref_logprobs", "is_weights")})

    def with_advantages(self, advantages: torch.Tensor) -> "TrainingBatch":
        return replace(self, advantages=advantages)

    def to_state(self) -> dict[str, torch.Tensor]:
        """Tensors only (torch.load(weights_only=True) reads them back); None fields are left out."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "TrainingBatch":
        optional = {"ref_logprobs", "is_weights"}
        missing = [f.name for f in fields(cls) if f.name not in optional and f.name not in state]
        if missing:
            raise ValueError(f"a saved training batch lacks {missing}")
        return cls(**{f.name: state.get(f.name) for f in fields(cls)})


def trim_padding(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                 completion_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Drop the leading prompt columns and trailing completion columns that are padding in every row
    (rows taken from a wider batch keep its width otherwise). Positions come from the mask, so the
    forward pass sees the same sequences."""
    p_keep = int(prompt_mask.sum(-1).max()) if prompt_mask.numel() else 0
    c_keep = int(completion_mask.sum(-1).max()) if completion_mask.numel() else 0
    lp = prompt_ids.shape[1]
    return (prompt_ids[:, lp - p_keep:], prompt_mask[:, lp - p_keep:], completion_ids[:, :c_keep],
            completion_mask[:, :c_keep])


def pack_by_tokens(rows: torch.Tensor, prompt_lengths: torch.Tensor, completion_lengths: torch.Tensor,
                   max_tokens: int, max_rows: int | None) -> list[torch.Tensor]:
    """Cut `rows` into micro-batches of at most `max_tokens` padded tokens (rows x (widest prompt +
    widest completion), what a forward pass actually computes) and at most `max_rows` rows.

    Rows are grouped by length, longest first (verl's dynamic batch size; an out-of-memory shows
    at the first micro-batch), so little of a micro-batch is padding; inside a micro-batch rows keep
    their order in `rows`. A row longer than the budget goes alone. Deterministic."""
    if len(rows) == 0:
        return []
    p, c = prompt_lengths[rows], completion_lengths[rows]
    order = sorted(range(len(rows)), key=lambda i: (-int(p[i] + c[i]), i))
    groups: list[list[int]] = []
    wide_p = wide_c = 0
    for i in order:
        new_p, new_c = max(wide_p, int(p[i])), max(wide_c, int(c[i]))
        current = groups[-1] if groups else None
        fits = (current is not None and (len(current) + 1) * (new_p + new_c) <= max_tokens
                and (max_rows is None or len(current) < max_rows))
        if fits:
            current.append(i)
            wide_p, wide_c = new_p, new_c
        else:
            groups.append([i])
            wide_p, wide_c = int(p[i]), int(c[i])
    return [rows[torch.tensor(sorted(g))] for g in groups]


@dataclass(frozen=True)
class StepPlan:
    """One optimizer step: every row it averages over, and the micro-batches that actually run.

    rows: every row of the step; the loss's denominators (sequence and token counts, Dr.GRPO's
        constant) count them all, so leaving a row out of `micro_batches` changes nothing else.
    micro_batches: row indices, each a forward/backward pass. Rows whose gradient is exactly zero
        (advantage 0 and no KL term: components/rl/update.py `rows_to_run`) are left out of them.
    """

    rows: torch.Tensor
    micro_batches: list[torch.Tensor]

    @property
    def rows_run(self) -> int:
        return sum(len(m) for m in self.micro_batches)


@dataclass(frozen=True)
class MicroBatches:
    """Row indices of optimizer steps and of the micro-batches each step accumulates.

    rows: rows per optimizer step on this process (rl.mini_batch_size / number of processes, >= 1).
    max_tokens, max_rows: the micro-batch budget (rl.max_tokens_per_micro_batch, rl.micro_batch_size).
    global_max: the maximum of an int over every process. Under DDP every process must take the same
        number of optimizer steps and backward passes (the gradient all-reduce is a collective), so
        those counts are agreed on; a process with fewer runs empty micro-batches.
    Every method takes the batch's prompt and completion masks (the real lengths) and `runs`: None
    (every row runs) or a bool [B] of the rows worth a forward pass; the others are counted in a
    step's `rows` but never packed into a micro-batch.
    """

    rows: int
    max_tokens: int
    max_rows: int | None = None
    global_max: Callable[[int], int] = lambda n: n

    def _pack(self, rows: torch.Tensor, prompt_mask: torch.Tensor, completion_mask: torch.Tensor,
              runs: torch.Tensor | None) -> list[torch.Tensor]:
        if runs is not None:
            rows = rows[runs[rows]]
        return pack_by_tokens(rows, prompt_mask.sum(-1), completion_mask.sum(-1), self.max_tokens, self.max_rows)

    def _step(self, rows: torch.Tensor, prompt_mask: torch.Tensor, completion_mask: torch.Tensor,
              runs: torch.Tensor | None) -> StepPlan:
        """The step's micro-batches, padded with empty ones to the largest count over processes, and at
        least one: a step whose every row is skipped still runs a backward (of an exact zero) so the
        gradients are zeros, not None, and the optimizer steps as it would have (AdamW's moments
        and weight decay move the weights even with a zero gradient)."""
        micro = self._pack(rows, prompt_mask, completion_mask, runs)
        count = max(1, self.global_max(len(micro)))
        return StepPlan(rows, micro + [torch.zeros(0, dtype=torch.long)] * (count - len(micro)))

    def for_scoring(self, prompt_mask: torch.Tensor, completion_mask: torch.Tensor,
                    runs: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Forward passes without gradient (old and reference log-probs): local, no collective."""
        return self._pack(torch.arange(len(prompt_mask)), prompt_mask, completion_mask, runs)

    def for_base_update(self, prompt_mask: torch.Tensor, completion_mask: torch.Tensor, epochs: int,
                        generator: torch.Generator, runs: torch.Tensor | None = None) -> list[StepPlan]:
        """`epochs` shuffled passes over the rows; each optimizer step takes the next `rows` of them,
        in token-budget micro-batches. The shuffle does not depend on `runs`: skipping rows leaves
        every step's rows as they were."""
        n = len(prompt_mask)
        count = self.global_max(max(1, math.ceil(n / self.rows)))
        steps = []
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for i in range(count):
                steps.append(self._step(order[i * self.rows:(i + 1) * self.rows], prompt_mask, completion_mask, runs))
        return steps

    def for_one_step(self, prompt_mask: torch.Tensor, completion_mask: torch.Tensor,
                     runs: torch.Tensor | None = None) -> StepPlan:
        """PIPO's PI step: one optimizer step accumulated over every row."""
        return self._step(torch.arange(len(prompt_mask)), prompt_mask, completion_mask, runs)
