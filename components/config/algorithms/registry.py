"""The algorithm record and its registry: everything that makes GRPO GRPO, in one place per algorithm.

A record names its building blocks (the advantage estimator, the policy loss and its aggregation, by
their keys in components/rl/advantages.py and components/rl/losses.py), states its paper's published
settings, and says which DAPO-style steps it takes (group filter, reward shaping) and how PIPO's
authors form its PI step. Config validation, the trainer, PIPO and the TRL benchmark all read the
record; nothing else branches on an algorithm's name.

Records are plain data, importable without torch: the params are checked (rl.algorithm among the
registered names) before any stage imports torch, and every stage already depends on
components/config. Adding an algorithm is one module here that calls `register` (imported by
components/config/algorithms/__init__.py), plus its test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# How each aggregation (components/rl/losses.py AGGREGATIONS, same keys; verl's loss_agg_mode names)
# turns per-token losses into one, in words: logged as rl.effective.loss_aggregation.
AGGREGATIONS = {
    "seq-mean-token-mean": "token mean per sequence, then sequence mean",
    "seq-mean-token-sum-norm": "token sum / (sequences x max_completion_length)",
    "token-mean": "token mean over the batch",
    "seq-mean": "sequence ratio, sequence mean",
}


@dataclass(frozen=True)
class Published:
    """What naming the algorithm gives where the user leaves rl.* (or rl.dapo.*) null: its paper's values."""

    epsilon: float  # clip range 1 - epsilon .. 1 + epsilon_high
    epsilon_high: float
    scale_rewards: bool  # divide advantages by the group std
    dynamic_sampling: bool = False  # the group filter is on (algorithms with `group_filter`)
    overlong_penalty: float = 0.0  # the soft overlong penalty at the limit (algorithms with `overlong_shaping`)


@dataclass(frozen=True)
class Algorithm:
    name: str  # rl.algorithm
    paper: str  # where `published` comes from
    published: Published
    aggregation: str  # an AGGREGATIONS key
    advantage: str = "group_relative"  # a components/rl/advantages.py ADVANTAGES key
    policy_loss: str = "token_ratio"  # a components/rl/losses.py POLICY_LOSSES key
    group_filter: bool = False  # DAPO's dynamic sampling (rl.dapo.dynamic_sampling, max_resample_rounds)
    overlong_shaping: bool = False  # DAPO's soft overlong penalty (rl.dapo.overlong_buffer, overlong_penalty)
    # The surrogate of PIPO's PI step in rl.pipo.pi_clip_mode "authors" (the authors' code per base).
    pipo_authors_surrogate: str = "authors"
    # GRPOConfig settings that make TRL train the same algorithm (benchmarks/vs_trl.py); None: not comparable.
    trl: dict = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"algorithm {self.name!r}: unknown aggregation {self.aggregation!r}; "
                             f"known: {', '.join(AGGREGATIONS)}")


_REGISTRY: dict[str, Algorithm] = {}


def register(algorithm: Algorithm) -> Algorithm:
    """Add a record; rl.algorithm may then name it. A name registered twice is a mistake."""
    if algorithm.name in _REGISTRY:
        raise ValueError(f"algorithm {algorithm.name!r} is registered twice")
    _REGISTRY[algorithm.name] = algorithm
    return algorithm


def unregister(name: str) -> None:
    """Remove a record (tests that register a toy algorithm clean up with it)."""
    _REGISTRY.pop(name)


def get(name: str) -> Algorithm:
    if name not in _REGISTRY:
        raise KeyError(f"rl.algorithm {name!r} is unknown; allowed: {', '.join(names())}")
    return _REGISTRY[name]


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)
