"""PIPO: Policy Improvement Policy Optimization (arXiv 2604.00860), as a plug-in over any base.

Symbols follow the paper (docs/pipo.md):
  mu_t       mean reward of this iteration's batch B_t (the policy after the last update)
  H_t        the last K batch means before this one (mu_t is NOT in it), a bounded deque
  mu_his     mean(H_t);  sigma_his = std(H_t, ddof=0), replaced by 1 when below 1e-8
  xi_t       (mu_t - mu_his) / sigma_his: did the previous update improve the policy?
  phi(x)     x if x >= 0 else lambda * x  (lambda = neg_scale): reinforce fully, suppress gently
  a_i        G * Abar_i / (sum_{j in group} |Abar_j| + 1e-6): attribution of cached response i
  c_i        clamp(a_i * phi(xi_t), -10, 10): the PI coefficient used in place of the advantage
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

from components.rl.batch import TrainingBatch

SIGMA_FLOOR = 1e-8
ATTRIBUTION_EPS = 1e-6
COEFF_CLAMP = 10.0


@dataclass(frozen=True)
class Signal:
    mu_t: float
    mu_his: float
    sigma_his: float
    xi: float
    phi: float


def phi(x: float, neg_scale: float) -> float:
    """Asymmetric gain: a helpful update (x >= 0) is reinforced fully, a harmful one damped by lambda."""
    return x if x >= 0 else neg_scale * x


def improvement_signal(mu_t: float, history: list[float], neg_scale: float) -> Signal:
    """xi_t and phi(xi_t) of this batch's mean against the window of earlier batch means."""
    if not history:
        raise ValueError("improvement_signal needs at least one past batch mean")
    h = torch.tensor(history, dtype=torch.float64)
    mu_his = float(h.mean())
    sigma_his = float(h.std(unbiased=False))  # ddof = 0, as the authors' numpy code
    if sigma_his < SIGMA_FLOOR:
        sigma_his = 1.0
    xi = (mu_t - mu_his) / sigma_his
    return Signal(mu_t=mu_t, mu_his=mu_his, sigma_his=sigma_his, xi=xi, phi=phi(xi, neg_scale))


def attributions(seq_advantages: torch.Tensor) -> torch.Tensor:
    """a = G * Abar / (sum_g |Abar| + 1e-6) per group. [P, G] -> [P, G].

    Each group's |a| sums to (almost exactly) G; a group with all-equal rewards has Abar = 0 and so
    a = 0: it carries no PI signal.
    """
    G = seq_advantages.shape[1]
    return G * seq_advantages / (seq_advantages.abs().sum(dim=1, keepdim=True) + ATTRIBUTION_EPS)


def pi_coefficients(a: torch.Tensor, phi_value: float) -> torch.Tensor:
    return (a * phi_value).clamp(-COEFF_CLAMP, COEFF_CLAMP)


class PIPOState:
    """The sliding window H of batch means and the cached previous batch B_{t-1}; checkpointable.

    The trainer calls it at two points of an iteration: `signal` and `pi_batch` before the base
    update (the PI step on B_{t-1}), `push` after it (B_t and mu_t kept for the next iteration).
    """

    def __init__(self, window: int, min_history: int):
        self.window = window  # K, validated by the config (rl.pipo.window >= 2)
        self.min_history = min_history
        self.history: deque[float] = deque(maxlen=window)
        self.cached: TrainingBatch | None = None  # B_{t-1}, its advantages replaced by the attributions a_i

    def signal(self, mu_t: float, neg_scale: float) -> Signal | None:
        """The improvement signal if the PI step is active this iteration, else None."""
        if self.cached is None or len(self.history) < self.min_history:
            return None
        return improvement_signal(mu_t, list(self.history), neg_scale)

    def pi_batch(self, phi_value: float) -> TrainingBatch:
        """B_{t-1} as the PI step trains on it: c_i = clamp(a_i * phi(xi_t)) in place of the advantage."""
        return self.cached.with_advantages(pi_coefficients(self.cached.advantages, phi_value))

    def push(self, mu_t: float, batch: TrainingBatch, group_size: int) -> None:
        """After the iteration's updates: mu_t joins the window, B_t becomes the cached batch.

        batch.advantages are the base advantages Abar of B_t, G = group_size consecutive rows per
        prompt; only their attributions a_i are kept (nothing is re-sampled or re-scored later)."""
        self.history.append(float(mu_t))
        a = attributions(batch.advantages.view(-1, group_size)).reshape(-1)
        self.cached = batch.with_advantages(a)

    def state_dict(self) -> dict:
        cached = self.cached.to_state() if self.cached is not None else {}
        if cached:  # what the cache holds in place of advantages, by that name in the checkpoint
            cached["attributions"] = cached.pop("advantages")
        return {
            "window": self.window,
            "min_history": self.min_history,
            "history": torch.tensor(list(self.history), dtype=torch.float64),
            "cached": cached,
        }

    def load_state_dict(self, state: dict) -> None:
        if int(state["window"]) != self.window:
            raise ValueError(f"PIPO state has window {int(state['window'])}, config has {self.window}")
        self.min_history = int(state["min_history"])
        self.history = deque((float(x) for x in state["history"]), maxlen=self.window)
        cached = dict(state["cached"])
        if cached:
            cached["advantages"] = cached.pop("attributions")
        self.cached = TrainingBatch.from_state(cached) if cached else None
