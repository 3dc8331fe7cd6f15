"""The improvement probe: a measured answer to "did the policy really improve?", to check PIPO's xi against.

Every `rl.pipo.probe.every` iterations, at the start of the iteration (the policy that samples B_t), the
policy answers a fixed set of held-out RL prompts (never trained on, never the eval split), scored by the
clean verifier (no verifier noise: the probe is the ground truth). Score per prompt: greedy correctness
(k = 1) or the mean over k samples. From consecutive probes j-1, j:

  true change  D_j = acc_j - acc_{j-1} on the same prompts, with its paired standard error
  signal       S_j = the mean of xi over the iterations since probe j-1 (each xi_t judges the update
               made at t - 1, so these judge exactly the updates between the two probes)

and at the end of the run `signal_agreement`: the correlation of S and D, and the share of intervals
where sign(S) = sign(D) among those where |D| exceeds its own standard error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
import torch

from components.rl import streams
from components.rl.collectives import Sums, paired_change


@dataclass
class ProbeSet:
    """The held-out prompts (rendered texts), their answers and sources."""

    texts: list[str]
    answers: list[str]
    sources: list[str]


def score_probe(engine, scorer, probe: ProbeSet, rl_cfg, generator: torch.Generator) -> torch.Tensor:
    """[n] scores of the probe prompts: greedy correctness (rl.pipo.probe.k 1) or the mean over k samples at
    rl.temperature, by the verifiers alone (never rl.verifier_noise)."""
    k = rl_cfg.pipo.probe.k
    texts = [t for t in probe.texts for _ in range(k)]
    batch = engine.generate(texts, rl_cfg.max_completion_length, rl_cfg.temperature, rl_cfg.top_p,
                            generator=generator, greedy=k == 1)
    correct = scorer.score([s for s in probe.sources for _ in range(k)], batch.texts,
                           [a for a in probe.answers for _ in range(k)])
    return torch.tensor(correct, dtype=torch.float64).view(-1, k).mean(dim=1)


AUTO_SIZE, AUTO_SHARE = 256, 5  # rl.pipo.probe.size null: 256 prompts, or a fifth of a smaller RL split


def probe_size(size: int | None, num_prompts: int) -> int:
    """rl.pipo.probe.size, its null meaning 256 prompts or a fifth of the RL prompts, whichever is fewer (so
    the guard, on by default, fits a user's small dataset and still trains on most of it)."""
    if size is not None:
        return size
    auto = min(AUTO_SIZE, num_prompts // AUTO_SHARE)
    if auto < 2:
        raise ValueError(f"the RL split has {num_prompts} prompts: too few to hold out a probe for rl.guard or "
                         "rl.pipo.probe (a fifth of them, at least 2); add prompts or set rl.guard.enabled=false")
    return auto


def split_probe(num_prompts: int, size: int | None, seed: int) -> tuple[list[int], list[int]]:
    """(training indices, probe indices): probe_size(size) prompts drawn once from the seed's probe-split
    stream (the same on every process and for every variant of a seed), the rest trained on."""
    size = probe_size(size, num_prompts)
    if size >= num_prompts:
        raise ValueError(f"rl.pipo.probe.size ({size}) must be below the number of RL prompts ({num_prompts})")
    order = torch.randperm(num_prompts, generator=streams.torch_stream(streams.PROBE_SPLIT, seed)).tolist()
    return sorted(order[size:]), sorted(order[:size])


def signal_agreement(signals: list[float], changes: list[float], ses: list[float]) -> dict[str, float]:
    """Correlation of signal and true change over every interval, and the sign agreement over the
    intervals whose change exceeds its own standard error (n of them)."""
    s = torch.tensor(signals, dtype=torch.float64)
    d = torch.tensor(changes, dtype=torch.float64)
    out = {"signal_corr": math.nan, "sign_agree": math.nan, "sign_agree_n": 0.0, "intervals": float(len(s))}
    if len(s) >= 3 and float(s.std()) > 0 and float(d.std()) > 0:
        out["signal_corr"] = float(torch.corrcoef(torch.stack([s, d]))[0, 1])
    clear = d.abs() > torch.tensor(ses, dtype=torch.float64)
    if clear.any():
        out["sign_agree"] = float((torch.sign(s[clear]) == torch.sign(d[clear])).double().mean())
        out["sign_agree_n"] = float(clear.sum())
    return out


@dataclass
class ProbeTracker:
    """The probe series of a run: checkpointed, so a resumed run's agreement covers every interval."""

    last_scores: torch.Tensor | None = None  # per prompt, at the previous probe
    pending_xi: list[float] = field(default_factory=list)  # xi of the iterations since the previous probe
    signals: list[float] = field(default_factory=list)
    changes: list[float] = field(default_factory=list)
    ses: list[float] = field(default_factory=list)

    def observe_xi(self, xi: float) -> None:
        self.pending_xi.append(xi)

    def record(self, scores: torch.Tensor, total: Sums = lambda xs: xs) -> dict[str, float]:
        """A new probe's per-prompt scores (this process's share; `total` sums over processes) -> its
        metrics (the change only from the second probe on)."""
        n, s = total([float(scores.numel()), float(scores.double().sum())])
        metrics = {"pipo/probe_accuracy": s / max(n, 1.0)}
        if self.last_scores is not None:
            change, se = paired_change(self.last_scores, scores, total)
            metrics.update({"pipo/probe_change": change, "pipo/probe_change_se": se})
            if self.pending_xi:  # an interval PIPO judged: one point of the agreement
                signal = sum(self.pending_xi) / len(self.pending_xi)
                metrics["pipo/probe_signal"] = signal
                self.signals.append(signal)
                self.changes.append(change)
                self.ses.append(se)
        self.last_scores = scores.clone()
        self.pending_xi = []
        return metrics

    def agreement(self) -> dict[str, float]:
        return {f"pipo/{k}": v for k, v in signal_agreement(self.signals, self.changes, self.ses).items()}

    def state_dict(self) -> dict:
        return {"last_scores": self.last_scores if self.last_scores is not None else torch.zeros(0),
                "has_last": self.last_scores is not None,
                "pending_xi": torch.tensor(self.pending_xi, dtype=torch.float64),
                "series": torch.tensor([self.signals, self.changes, self.ses], dtype=torch.float64)}

    def load_state_dict(self, state: dict) -> None:
        self.last_scores = state["last_scores"] if state["has_last"] else None
        self.pending_xi = state["pending_xi"].tolist()
        series = state["series"].reshape(3, -1)
        self.signals, self.changes, self.ses = (row.tolist() for row in series)
