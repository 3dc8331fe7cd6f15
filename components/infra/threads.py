"""Torch's intra-op thread count for a repeated piece of work, chosen by measured speed.

Small ops (a decode step of a small model) gain a little from a second thread on a quiet machine
and lose a lot on a shared one: every op waits for its slowest thread, and a thread whose core is
taken by another process waits for a time slice. Which count is faster depends on what else runs,
so it is measured, not guessed: each candidate's seconds per unit of work are tracked (a moving
average), the fastest is used, and every `explore_every`-th call tries another, so the choice
follows the machine's load as it changes.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


class ThreadChooser:
    """Chooses among `candidates` thread counts (default: 1 and torch's count) by seconds per unit."""

    def __init__(self, candidates: list[int] | None = None, explore_every: int = 8, smoothing: float = 0.5):
        self.candidates = sorted(set(candidates or [1, torch.get_num_threads()]))
        self.explore_every, self.smoothing = explore_every, smoothing
        self.cost: dict[int, float] = {}  # candidate -> moving average of seconds per unit
        self.calls = 0

    def pick(self) -> int:
        untried = [c for c in self.candidates if c not in self.cost]
        if untried:
            return untried[0]
        self.calls += 1
        ranked = sorted(self.candidates, key=self.cost.__getitem__)
        if len(ranked) > 1 and self.calls % self.explore_every == 0:
            return ranked[1 + (self.calls // self.explore_every) % (len(ranked) - 1)]
        return ranked[0]

    def record(self, threads: int, seconds: float, units: float) -> None:
        if units <= 0:
            return
        cost = seconds / units
        old = self.cost.get(threads)
        self.cost[threads] = cost if old is None else self.smoothing * old + (1 - self.smoothing) * cost

    @contextlib.contextmanager
    def run(self) -> Iterator[list[float]]:
        """Runs the block on the chosen count; the block appends its units of work to the yielded list."""
        threads = self.pick()
        units: list[float] = []
        t0 = time.perf_counter()
        with torch_threads(threads):
            yield units
        self.record(threads, time.perf_counter() - t0, sum(units))
