"""Torch's intra-op thread count for a repeated piece of work, chosen by measured speed.

Small ops (a decode step of a small model) gain a little from a second thread on a quiet machine
and lose a lot on a shared one: every op waits for its slowest thread, and a thread whose core is
taken by another process waits for a time slice. Which count is faster depends on what else runs,
so it is measured, not guessed: each candidate's seconds per unit of work are tracked (the median of
its last few calls, robust to one noisy call), the fastest is used, and every `explore_every`-th call
tries another, so the choice follows the machine's load as it changes. The most threads stay in use
unless fewer are clearly faster (by `margin`): on a quiet machine the two are close and noisy.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import deque
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

    def __init__(self, candidates: list[int] | None = None, explore_every: int = 8, margin: float = 0.1,
                 memory: int = 3):
        self.candidates = sorted(set(candidates or [1, torch.get_num_threads()]))
        self.explore_every, self.margin = explore_every, margin
        self.samples: dict[int, deque[float]] = {c: deque(maxlen=memory) for c in self.candidates}
        self.calls = 0

    @property
    def cost(self) -> dict[int, float]:
        """candidate -> seconds per unit (median of its recent calls), for those measured."""
        return {c: statistics.median(s) for c, s in self.samples.items() if s}

    def best(self) -> int:
        cost, most = self.cost, self.candidates[-1]
        fastest = min(cost, key=cost.__getitem__)
        return fastest if cost[fastest] < (1 - self.margin) * cost[most] else most

    def pick(self) -> int:
        untried = [c for c in self.candidates if not self.samples[c]]
        if untried:
            return untried[0]
        self.calls += 1
        best = self.best()
        others = [c for c in self.candidates if c != best]
        if others and self.calls % self.explore_every == 0:
            return others[(self.calls // self.explore_every) % len(others)]
        return best

    def record(self, threads: int, seconds: float, units: float) -> None:
        if units > 0:
            self.samples[threads].append(seconds / units)

    @contextlib.contextmanager
    def run(self) -> Iterator[list[float]]:
        """Runs the block on the chosen count; the block appends its units of work to the yielded list."""
        threads = self.pick()
        units: list[float] = []
        t0 = time.perf_counter()
        with torch_threads(threads):
            yield units
        self.record(threads, time.perf_counter() - t0, sum(units))
