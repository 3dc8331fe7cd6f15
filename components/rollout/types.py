"""The one rollout result every engine returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RolloutBatch:
    """B sampled sequences. Prompts are left-padded, completions right-padded.

    prompt_ids, prompt_mask:         [B, Lp]
    completion_ids, completion_mask: [B, Lc]  (mask is 1 on generated tokens, EOS included)
    logprobs:                        [B, Lc]  log pi(token) under the sampling policy, 0 on padding
    truncated:                       [B] bool, True when no EOS within max_new_tokens
    texts:                           decoded completions (special tokens removed)
    """

    prompts: list[str]
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    logprobs: torch.Tensor
    truncated: torch.Tensor
    texts: list[str]

    def __len__(self) -> int:
        return len(self.prompts)

    def to(self, device: torch.device | str) -> "RolloutBatch":
        move = lambda t: t.to(device)  # noqa: E731
        return RolloutBatch(self.prompts, move(self.prompt_ids), move(self.prompt_mask), move(self.completion_ids),
                            move(self.completion_mask), move(self.logprobs), move(self.truncated), self.texts)

    @property
    def num_completion_tokens(self) -> int:
        return int(self.completion_mask.sum())
