"""The `rl:` section: the algorithm and its published settings, PIPO (with its probe), DAPO, verifier noise."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.config.schema_base import Seed, _Strict

# The one list of RL algorithm names. The loss and advantage registries (components/rl/losses.py
# POLICY_LOSSES, components/rl/advantages.py ADVANTAGES) are keyed by these same names, but they
# need torch, and the config must load without it (params are checked before any stage imports
# torch), so the names live here; tests/test_config.py checks both registries' keys equal this.
ALGORITHMS = ("grpo", "dr_grpo", "dapo", "gspo")
# How each algorithm's loss aggregates tokens (fixed by its loss function; logged with the effective settings).
LOSS_AGGREGATION = {"grpo": "token mean per sequence, then sequence mean",
                    "dr_grpo": "token sum / (sequences x max_completion_length)",
                    "dapo": "token mean over the batch",
                    "gspo": "sequence ratio, sequence mean"}


class AlgorithmDefaults(_Strict):
    """An algorithm's published settings: what naming it gives unless rl.* sets the value explicitly."""

    epsilon: float = Field(gt=0)
    epsilon_high: float = Field(gt=0)
    scale_rewards: bool


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
    size: int = Field(ge=2)
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
        return self

    @property
    def history_needed(self) -> int:
        return self.window if self.min_history is None else self.min_history


class DAPOConfig(_Strict):
    dynamic_sampling: bool
    max_resample_rounds: int = Field(ge=0)
    overlong_buffer: int = Field(ge=0)
    overlong_penalty: float = Field(ge=0)


class RLConfig(_Strict):
    algorithm: str
    algorithm_defaults: dict[str, AlgorithmDefaults]
    pipo: PIPOConfig
    dapo: DAPOConfig
    verifier_noise: VerifierNoiseConfig
    iterations: int = Field(ge=1)
    prompts_per_iteration: int = Field(ge=1)
    num_generations: int
    lr: float = Field(gt=0)
    epsilon: float | None = Field(gt=0)  # null: algorithm_defaults[algorithm]
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
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"rl.algorithm {self.algorithm!r} is unknown; allowed: {', '.join(ALGORITHMS)}")
        if self.num_generations < 2:
            raise ValueError("rl.num_generations must be >= 2 (group-relative advantages need a group)")
        if set(self.algorithm_defaults) != set(ALGORITHMS):
            raise ValueError(f"rl.algorithm_defaults must have exactly one entry per algorithm ({', '.join(ALGORITHMS)}); "
                             f"got {', '.join(self.algorithm_defaults) or 'none'}")
        return self

    @property
    def effective(self) -> AlgorithmSettings:
        """The algorithm's published settings with every explicitly set rl.* value in their place."""
        published = self.algorithm_defaults[self.algorithm]
        dapo = self.algorithm == "dapo"
        return AlgorithmSettings(
            algorithm=self.algorithm,
            epsilon=published.epsilon if self.epsilon is None else self.epsilon,
            epsilon_high=published.epsilon_high if self.epsilon_high is None else self.epsilon_high,
            scale_rewards=published.scale_rewards if self.scale_rewards is None else self.scale_rewards,
            loss_aggregation=LOSS_AGGREGATION[self.algorithm],
            dynamic_sampling=dapo and self.dapo.dynamic_sampling,
            overlong_buffer=self.dapo.overlong_buffer if dapo else 0,
            overlong_penalty=self.dapo.overlong_penalty if dapo else 0.0)
