"""The `rl:` section: the algorithm (its record: components/config/algorithms), PIPO (with its probe), DAPO's
knobs, the verified-improvement guard, verifier noise."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

import components.config.algorithms as algorithms
from components.config.schema_base import Seed, _Strict

# The registered algorithm names (each algorithm's record: components/config/algorithms/), built-ins first.
ALGORITHMS = algorithms.names()
AlgorithmDefaults = algorithms.Published  # an algorithm's published settings (re-exported by schema.py)


class AlgorithmSettings(BaseModel):
    """The values a run actually trains with (`RLConfig.effective`), logged as MLflow params rl.effective.*."""

    model_config = ConfigDict(frozen=True)
    algorithm: str
    epsilon: float
    epsilon_high: float
    scale_rewards: bool
    loss_aggregation: str
    dynamic_sampling: bool
    overlong_buffer: int
    overlong_penalty: float


class ProbeConfig(_Strict):
    every: int = Field(ge=0)  # 0 = off
    size: int | None = Field(ge=2)  # null: 256, or a fifth of the RL prompts if fewer (components/rl/probe.py)
    k: int = Field(ge=1)  # 1: greedy correctness; > 1: mean over k samples at rl.temperature


class VerifierNoiseConfig(_Strict):
    flip_share: float = Field(ge=0, le=1)  # share of RL verdicts inverted (0 = a clean verifier)
    seed: Seed


class PIPOConfig(_Strict):
    enabled: bool
    window: int
    neg_scale: float
    min_history: int | None  # null = window (K), the authors' default
    pi_lr_scale: float = Field(gt=0)
    pi_clip_mode: Literal["standard", "authors"]
    pi_steps: Literal["one", "match_base"]  # one optimizer step, or as many as the base update takes
    signal: Literal["window", "paired"]
    paired_share: float = Field(gt=0, le=1)  # share of B_{t-1}'s prompt groups re-sampled (signal: paired)
    window_membership: Literal["previous", "with_current"]  # xi against H_t, or with mu_t pushed in first
    blind: bool  # control: the PI step's sign of xi drawn at random (same magnitudes and step count)
    joint: bool  # the PI loss on B_{t-1} joins the base step on B_t: one optimizer step per iteration
    probe: ProbeConfig

    @model_validator(mode="after")
    def _ranges(self) -> "PIPOConfig":
        if self.window < 2:
            raise ValueError(f"rl.pipo.window must be >= 2 (got {self.window})")
        if not 0.0 <= self.neg_scale <= 1.0:
            raise ValueError(f"rl.pipo.neg_scale must be in [0, 1] (got {self.neg_scale})")
        if self.min_history is not None and not 1 <= self.min_history <= self.window:
            raise ValueError(f"rl.pipo.min_history must be in [1, window={self.window}] or null "
                             f"(got {self.min_history})")
        if self.joint and self.pi_steps != "one":
            raise ValueError("rl.pipo.joint adds the PI loss to one base step; pi_steps match_base is a step count: "
                             "set rl.pipo.pi_steps to one or rl.pipo.joint to false")
        if self.joint and self.pi_lr_scale != 1.0:
            raise ValueError(f"rl.pipo.joint takes one step at rl.lr, so pi_lr_scale ({self.pi_lr_scale}) cannot "
                             "apply: set rl.pipo.pi_lr_scale to 1.0 or rl.pipo.joint to false")
        return self

    @property
    def effective_min_history(self) -> int:
        """rl.pipo.min_history, its null meaning the window K."""
        return self.window if self.min_history is None else self.min_history


class GuardConfig(_Strict):
    """rl.guard: the verified-improvement guard (components/rl/guard.py, docs/guard.md)."""

    enabled: bool
    every: int = Field(ge=1)  # iterations between probe checks
    drop_se: float = Field(ge=0)  # roll back when the probe falls below the best by more than this many paired SEs
    lr_decay: float = Field(gt=0, le=1)  # lr multiplier at each rollback
    max_rollbacks: int = Field(ge=0)  # a drop after this many rollbacks stops the run
    # the RL output: `last_verified`, the final policy when its last check shows no drop (else the best);
    # `best`, the best verified checkpoint always
    output: Literal["last_verified", "best"]


class DAPOConfig(_Strict):
    """The knobs of DAPO's steps, used by algorithms whose record takes them (null: the record's published value)."""

    dynamic_sampling: bool | None
    max_resample_rounds: int = Field(ge=0)
    overlong_buffer: int = Field(ge=0)
    overlong_penalty: float | None = Field(ge=0)


class RLConfig(_Strict):
    algorithm: str
    pipo: PIPOConfig
    dapo: DAPOConfig
    guard: GuardConfig
    verifier_noise: VerifierNoiseConfig
    iterations: int = Field(ge=1)
    prompts_per_iteration: int = Field(ge=1)
    num_generations: int
    lr: float = Field(gt=0)
    epsilon: float | None = Field(gt=0)  # null: the algorithm's published value (its record)
    epsilon_high: float | None = Field(gt=0)
    beta: float = Field(ge=0)
    scale_rewards: bool | None
    mask_truncated_completions: bool
    temperature: float = Field(gt=0)
    top_p: float = Field(gt=0, le=1)
    max_completion_length: int = Field(ge=1)
    ppo_epochs: int = Field(ge=1)
    mini_batch_size: int = Field(ge=1)
    micro_batch_size: int | None = Field(ge=1)
    max_tokens_per_micro_batch: int = Field(ge=1)
    skip_zero_advantage: bool
    update_threads: int | None = Field(ge=1)
    log_entropy: bool
    max_grad_norm: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    checkpoint_every: int = Field(ge=1)
    keep_checkpoints: int = Field(ge=1)
    log_every: int = Field(ge=1)
    out_dir: str
    checkpoint_dir: str

    @model_validator(mode="after")
    def _known(self) -> "RLConfig":
        if self.algorithm not in algorithms.names():
            raise ValueError(f"rl.algorithm {self.algorithm!r} is unknown; allowed: {', '.join(algorithms.names())}")
        if self.num_generations < 2:
            raise ValueError("rl.num_generations must be >= 2 (group-relative advantages need a group)")
        return self

    @property
    def record(self) -> algorithms.Algorithm:
        """The algorithm's record: its building blocks and published settings."""
        return algorithms.get(self.algorithm)

    @property
    def effective(self) -> AlgorithmSettings:
        """The algorithm's published settings with every explicitly set rl.* value in their place."""
        record = self.record
        published, dapo = record.published, self.dapo

        def chosen(value, default):
            return default if value is None else value

        return AlgorithmSettings(
            algorithm=self.algorithm,
            epsilon=chosen(self.epsilon, published.epsilon),
            epsilon_high=chosen(self.epsilon_high, published.epsilon_high),
            scale_rewards=chosen(self.scale_rewards, published.scale_rewards),
            loss_aggregation=algorithms.AGGREGATIONS[record.aggregation],
            dynamic_sampling=record.group_filter and chosen(dapo.dynamic_sampling, published.dynamic_sampling),
            overlong_buffer=dapo.overlong_buffer if record.overlong_shaping else 0,
            overlong_penalty=chosen(dapo.overlong_penalty, published.overlong_penalty) if record.overlong_shaping
            else 0.0)
