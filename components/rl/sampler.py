"""Deterministic prompt order: a fresh permutation per epoch over the RL prompts, from the seed's prompt-order
stream (the same on every process: each takes its share of the one global order)."""

from __future__ import annotations

import numpy as np

from components.rl import streams


class PromptSampler:
    def __init__(self, num_prompts: int, seed: int):
        if num_prompts < 1:
            raise ValueError("the RL split has no prompts")
        self.num_prompts = num_prompts
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return streams.numpy_stream(streams.PROMPT_ORDER, self.seed, epoch).permutation(self.num_prompts)

    def next(self, count: int) -> list[int]:
        """The next `count` prompt indices; wraps into a new shuffled epoch when exhausted."""
        out: list[int] = []
        while len(out) < count:
            if self.position == self.num_prompts:
                self.epoch += 1
                self.position = 0
                self._order = self._permutation(self.epoch)
            take = min(count - len(out), self.num_prompts - self.position)
            out.extend(int(i) for i in self._order[self.position : self.position + take])
            self.position += take
        return out

    def state_dict(self) -> dict[str, int]:
        return {"num_prompts": self.num_prompts, "seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["num_prompts"] != self.num_prompts or state["seed"] != self.seed:
            raise ValueError(
                f"sampler state is for {state['num_prompts']} prompts / seed {state['seed']}, "
                f"not {self.num_prompts} / {self.seed}"
            )
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._permutation(self.epoch)
