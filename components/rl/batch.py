"""What an update trains on, and how it is cut into optimizer steps and micro-batches.

`TrainingBatch` is the one batch type of both updates: the base update on B_t and PIPO's PI step on
B_{t-1} (the cached TrainingBatch with the PI coefficients c_i in place of the advantages).
`MicroBatches` is the one place that decides which rows go into which micro-batch and optimizer
step; a token-budget split would replace `MicroBatches.split` and nothing else.
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


@dataclass(frozen=True)
class MicroBatches:
    """Row indices of optimizer steps and of the micro-batches each step accumulates.

    rows: rows per micro-batch on this process (rl.mini_batch_size / number of processes, >= 1).
    global_max: the maximum of an int over every process. Under DDP every process must take the same
        number of optimizer steps and backward passes (the gradient all-reduce is a collective), so
        step counts are agreed on; a process with fewer rows runs empty micro-batches.
    """

    rows: int
    global_max: Callable[[int], int] = lambda n: n

    def split(self, order: torch.Tensor, count: int) -> list[torch.Tensor]:
        """`order` cut into `count` consecutive micro-batches of `rows` (the trailing ones may be empty)."""
        return [order[i * self.rows:(i + 1) * self.rows] for i in range(count)]

    def _count(self, n: int) -> int:
        return self.global_max(max(1, math.ceil(n / self.rows)))

    def for_scoring(self, n: int) -> list[torch.Tensor]:
        """Forward passes without gradient (old and reference log-probs): local, no collective."""
        return self.split(torch.arange(n), math.ceil(n / self.rows))

    def for_base_update(self, n: int, epochs: int, generator: torch.Generator) -> list[list[torch.Tensor]]:
        """`epochs` shuffled passes over n rows; each optimizer step is one micro-batch."""
        count = self._count(n)
        steps = []
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            steps.extend([micro] for micro in self.split(order, count))
        return steps

    def for_one_step(self, n: int) -> list[torch.Tensor]:
        """PIPO's PI step: one optimizer step accumulated over every row, in order."""
        return self.split(torch.arange(n), self._count(n))
