"""The one rollout result every engine returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class RolloutBatch:
    """B sampled sequences. Prompts are left-padded, completions right-padded.

    prompt_ids, prompt_mask:         [B, Lp]
    completion_ids, completion_mask: [B, Lc]  (mask is 1 on generated tokens, the stop token included)
    logprobs:                        [B, Lc]  log pi(token) under the sampling policy, 0 on padding
    truncated:                       [B] bool, True when no stop id (end of turn, EOS) within max_new_tokens
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

    def select(self, idx: torch.Tensor) -> "RolloutBatch":
        """The rows `idx` (a 1-D index tensor), in that order."""
        rows = idx.tolist()
        return RolloutBatch(
            prompts=[self.prompts[i] for i in rows], prompt_ids=self.prompt_ids[idx],
            prompt_mask=self.prompt_mask[idx], completion_ids=self.completion_ids[idx],
            completion_mask=self.completion_mask[idx], logprobs=self.logprobs[idx], truncated=self.truncated[idx],
            texts=[self.texts[i] for i in rows])

    @staticmethod
    def concat(parts: list["RolloutBatch"], pad_id: int) -> "RolloutBatch":
        """The rows of every part, in order. Widths may differ: prompts are re-padded on the left and
        completions on the right to the widest part."""
        if len(parts) == 1:
            return parts[0]
        lp = max(p.prompt_ids.shape[1] for p in parts)
        lc = max(p.completion_ids.shape[1] for p in parts)

        def left(x: torch.Tensor, value) -> torch.Tensor:
            return F.pad(x, (lp - x.shape[1], 0), value=value)

        def right(x: torch.Tensor, value) -> torch.Tensor:
            return F.pad(x, (0, lc - x.shape[1]), value=value)

        return RolloutBatch(
            prompts=[s for p in parts for s in p.prompts],
            prompt_ids=torch.cat([left(p.prompt_ids, pad_id) for p in parts]),
            prompt_mask=torch.cat([left(p.prompt_mask, 0) for p in parts]),
            completion_ids=torch.cat([right(p.completion_ids, pad_id) for p in parts]),
            completion_mask=torch.cat([right(p.completion_mask, 0) for p in parts]),
            logprobs=torch.cat([right(p.logprobs, 0.0) for p in parts]),
            truncated=torch.cat([p.truncated for p in parts]),
            texts=[t for p in parts for t in p.texts],
        )
