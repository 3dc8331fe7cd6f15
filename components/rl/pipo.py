"""PIPO: Policy Improvement Policy Optimization (arXiv 2604.00860), as a plug-in over any base.

Symbols follow the paper (docs/pipo.md):
  mu_t       mean reward of this iteration's batch B_t (the policy after the last update)
  H_t        the last K batch means before this one (mu_t is NOT in it), a bounded deque
  W_t        the window xi is measured against (rl.pipo.window_membership): H_t ("previous"), or the
             last K of H_t + [mu_t] ("with_current": mu_t pushed in first, an earlier authors' version)
  mu_his     mean(W_t);  sigma_his = std(W_t, ddof=0), replaced by 1 when below 1e-8
  xi_t       (mu_t - mu_his) / sigma_his: did the previous update improve the policy?
  phi(x)     x if x >= 0 else lambda * x  (lambda = neg_scale): reinforce fully, suppress gently
  a_i        G * Abar_i / (sum_{j in group} |Abar_j| + 1e-6): attribution of cached response i
  c_i        clamp(a_i * phi(xi_t), -10, 10): the PI coefficient used in place of the advantage

Two clip modes (rl.pipo.pi_clip_mode): "standard" is the above (the spec's); "authors" reproduces the
authors' verl code: progress mu_t - mu_his clipped to +-5, sigma replaced by 1 below 1e-6 (and with fewer
than two means), c_i = clamp(a_i * xi_t, -10, 10) and lambda multiplying the PI loss when xi_t < 0 (so the
effective negative cap is 10 * lambda). Two signals (rl.pipo.signal): "window" (xi_t as above) and
"paired" (`paired_signal`: the same prompts before and after the update).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import torch

from components.rl.batch import TrainingBatch

SIGMA_FLOOR = 1e-8
ATTRIBUTION_EPS = 1e-6
COEFF_CLAMP = 10.0
AUTHORS_PROGRESS_CLIP = 5.0  # authors: mu_t - mu_his clipped before dividing by sigma
AUTHORS_SIGMA_MIN = 1e-6  # authors: a sigma below this is replaced by 1 (a flat window must not blow xi up)


@dataclass(frozen=True)
class Signal:
    """What the PI step uses. For the paired signal, mu_t / mu_his are the re-sampled prompts' mean
    reward after / before the update and sigma_his the standard error of that difference."""

    mu_t: float
    mu_his: float
    sigma_his: float
    xi: float
    phi: float  # multiplies the attributions before the clamp
    loss_scale: float = 1.0  # multiplies the PI loss (the authors' lambda when xi < 0)
    xi_used: float | None = None  # the xi the PI step acts on: xi, or rl.pipo.blind's random sign x |xi|

    def __post_init__(self):
        if self.xi_used is None:
            object.__setattr__(self, "xi_used", self.xi)

    def blinded(self, sign: float) -> "Signal":
        """rl.pipo.blind: the same step with the sign drawn at random. The coefficients keep their magnitude
        (|phi| and the loss factor of the measured xi), only their sign is `sign` (+1 or -1)."""
        return replace(self, xi_used=sign * abs(self.xi), phi=sign * abs(self.phi))

    @property
    def takes_step(self) -> bool:
        """False when every coefficient or the loss is exactly 0: no step at all (a step on a zero
        gradient still moves the weights through AdamW's momentum)."""
        return self.phi != 0.0 and self.loss_scale != 0.0


def phi(x: float, neg_scale: float) -> float:
    """Asymmetric gain: a helpful update (x >= 0) is reinforced fully, a harmful one damped by lambda."""
    return x if x >= 0 else neg_scale * x


def improvement_signal(mu_t: float, history: list[float], neg_scale: float, mode: str = "standard") -> Signal:
    """xi_t and phi(xi_t) of this batch's mean against `history`, the window W_t of batch means.

    mode "standard": the spec's; "authors": their progress clip, sigma rule and lambda on the loss."""
    if not history:
        raise ValueError("improvement_signal needs at least one past batch mean")
    h = torch.tensor(history, dtype=torch.float64)
    mu_his = float(h.mean())
    sigma_his = float(h.std(unbiased=False))  # ddof = 0, as the authors' numpy code
    if mode == "authors":
        sigma_his = sigma_his if sigma_his >= AUTHORS_SIGMA_MIN and len(history) >= 2 else 1.0
        progress = min(max(mu_t - mu_his, -AUTHORS_PROGRESS_CLIP), AUTHORS_PROGRESS_CLIP)
        return _signal(mu_t, mu_his, sigma_his, progress / sigma_his, neg_scale, mode)
    if sigma_his < SIGMA_FLOOR:
        sigma_his = 1.0
    return _signal(mu_t, mu_his, sigma_his, (mu_t - mu_his) / sigma_his, neg_scale, mode)


def paired_signal(mean_before: float, mean_after: float, se: float, neg_scale: float,
                  mode: str = "standard") -> Signal:
    """xi as a t-statistic: the change in mean reward on the same prompts re-sampled after the update,
    over its standard error (floored like sigma_his), then phi / lambda as the clip mode says."""
    se = se if se >= SIGMA_FLOOR else 1.0
    return _signal(mean_after, mean_before, se, (mean_after - mean_before) / se, neg_scale, mode)


def _signal(mu_t: float, mu_his: float, sigma: float, xi: float, neg_scale: float, mode: str) -> Signal:
    if mode == "authors":  # the coefficient takes xi itself; lambda scales the loss
        return Signal(mu_t=mu_t, mu_his=mu_his, sigma_his=sigma, xi=xi, phi=xi,
                      loss_scale=1.0 if xi >= 0 else neg_scale)
    return Signal(mu_t=mu_t, mu_his=mu_his, sigma_his=sigma, xi=xi, phi=phi(xi, neg_scale))


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
    For the paired signal the cache also holds B_{t-1}'s prompt indices and per-group mean rewards.
    """

    def __init__(self, window: int, min_history: int, clip_mode: str = "standard", membership: str = "previous"):
        self.window = window  # K, validated by the config (rl.pipo.window >= 2)
        self.min_history = min_history
        self.clip_mode = clip_mode
        self.membership = membership  # rl.pipo.window_membership
        self.history: deque[float] = deque(maxlen=window)
        self.cached: TrainingBatch | None = None  # B_{t-1}, its advantages replaced by the attributions a_i
        self.cached_prompts = torch.zeros(0, dtype=torch.long)  # B_{t-1}'s prompt index per group
        self.cached_group_rewards = torch.zeros(0, dtype=torch.float64)  # and its mean reward then

    @property
    def active(self) -> bool:
        """Whether the PI step runs this iteration: a cached batch and a full enough window."""
        return self.cached is not None and len(self.history) >= self.min_history

    def signal(self, mu_t: float, neg_scale: float) -> Signal | None:
        """The window improvement signal if the PI step is active this iteration, else None."""
        if not self.active:
            return None
        window = list(self.history)
        if self.membership == "with_current":  # mu_t in, the oldest out: K - 1 previous means and mu_t
            window = (window + [float(mu_t)])[-self.window:]
        return improvement_signal(mu_t, window, neg_scale, self.clip_mode)

    def pi_batch(self, signal: Signal) -> TrainingBatch:
        """B_{t-1} as the PI step trains on it: c_i = clamp(a_i * phi) in place of the advantage."""
        return self.cached.with_advantages(pi_coefficients(self.cached.advantages, signal.phi))

    def push(self, mu_t: float, batch: TrainingBatch, group_size: int, prompts: torch.Tensor | None = None,
             group_rewards: torch.Tensor | None = None) -> None:
        """After the iteration's updates: mu_t joins the window, B_t becomes the cached batch.

        batch.advantages are the base advantages Abar of B_t, G = group_size consecutive rows per
        prompt; only their attributions a_i are kept. prompts / group_rewards ([P] each): the groups'
        prompt indices and mean rewards, kept for the paired signal."""
        self.history.append(float(mu_t))
        a = attributions(batch.advantages.view(-1, group_size)).reshape(-1)
        self.cached = batch.with_advantages(a)
        if prompts is not None and group_rewards is not None:
            self.cached_prompts = prompts.to(torch.long).clone()
            self.cached_group_rewards = group_rewards.to(torch.float64).clone()

    def state_dict(self) -> dict:
        cached = self.cached.to_state() if self.cached is not None else {}
        if cached:  # what the cache holds in place of advantages, by that name in the checkpoint
            cached["attributions"] = cached.pop("advantages")
        return {
            "window": self.window,
            "min_history": self.min_history,
            "history": torch.tensor(list(self.history), dtype=torch.float64),
            "cached": cached,
            "cached_prompts": self.cached_prompts,
            "cached_group_rewards": self.cached_group_rewards,
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
        if "cached_prompts" not in state:
            raise ValueError("the checkpoint's PIPO state has no prompt cache (it predates the paired signal); "
                             "it cannot resume: remove its folder under rl.checkpoint_dir to start over")
        self.cached_prompts = state["cached_prompts"]
        self.cached_group_rewards = state["cached_group_rewards"]
