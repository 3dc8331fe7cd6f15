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
from dataclasses import dataclass, fields

import torch

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


@dataclass
class CachedBatch:
    """What the PI step needs of B_{t-1}; nothing is re-sampled or re-scored.

    prompt_ids, prompt_mask: [B, Lp]; completion_ids, loss_mask: [B, Lc] (loss_mask is the base
    loss's mask: padding and, if configured, truncated completions are 0); old_logprobs: [B, Lc]
    under the policy that generated B_{t-1}; attributions: [B]; ref_logprobs: [B, Lc] or None;
    is_weights: [B, Lc] or None.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    loss_mask: torch.Tensor
    old_logprobs: torch.Tensor
    attributions: torch.Tensor
    ref_logprobs: torch.Tensor | None = None
    is_weights: torch.Tensor | None = None  # truncated IS weights when the sampler was not the trainer

    def to_state(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "CachedBatch":
        return cls(**{f.name: state.get(f.name) for f in fields(cls)})


class PIPOState:
    """The sliding window of batch means and the cached previous batch; checkpointable."""

    def __init__(self, window: int, min_history: int):
        if window < 2:
            raise ValueError(f"rl.pipo.window must be >= 2, got {window}")
        self.window = window
        self.min_history = min_history
        self.history: deque[float] = deque(maxlen=window)
        self.cached: CachedBatch | None = None

    def signal(self, mu_t: float, neg_scale: float) -> Signal | None:
        """The improvement signal if the PI step is active this iteration, else None."""
        if self.cached is None or len(self.history) < self.min_history:
            return None
        return improvement_signal(mu_t, list(self.history), neg_scale)

    def push(self, mu_t: float, batch: CachedBatch) -> None:
        """After the iteration's updates: mu_t joins the window, B_t becomes the cached batch."""
        self.history.append(float(mu_t))
        self.cached = batch

    def state_dict(self) -> dict:
        return {
            "window": self.window,
            "min_history": self.min_history,
            "history": torch.tensor(list(self.history), dtype=torch.float64),
            "cached": self.cached.to_state() if self.cached is not None else {},
        }

    def load_state_dict(self, state: dict) -> None:
        if int(state["window"]) != self.window:
            raise ValueError(f"PIPO state has window {int(state['window'])}, config has {self.window}")
        self.min_history = int(state["min_history"])
        self.history = deque((float(x) for x in state["history"]), maxlen=self.window)
        self.cached = CachedBatch.from_state(state["cached"]) if state["cached"] else None
