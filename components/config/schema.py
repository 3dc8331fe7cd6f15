"""The typed configuration: pydantic models for the sections of params.yaml (with advanced.yaml merged
in) and the Config that holds them.

No default lives here: every field is required, so a value missing from params.yaml and advanced.yaml
is an error rather than a silent second default. Unknown keys and wrong types are rejected by the
strict base model (its errors name the dotted key once loading.py formats them).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from components.config.schema_base import ConfigError, Seed, _Strict
from components.config.schema_rl import (ALGORITHMS, AlgorithmDefaults, AlgorithmSettings, DAPOConfig, PIPOConfig,
                                         ProbeConfig, RLConfig, VerifierNoiseConfig)

__all__ = ["ALGORITHMS", "AlgorithmDefaults", "AlgorithmSettings", "ConfigError", "DAPOConfig", "PIPOConfig",
           "ProbeConfig", "RLConfig", "Seed", "VerifierNoiseConfig"]


class TaskConfig(_Strict):
    name: Literal["chain_sum"]
    min_terms: int = Field(ge=2)
    max_terms: int = Field(ge=2)
    min_digits: int = Field(ge=1)
    max_digits: int = Field(ge=1)

    @model_validator(mode="after")
    def _ranges(self) -> "TaskConfig":
        if self.max_terms < self.min_terms:
            raise ValueError("max_terms must be >= min_terms")
        if self.max_digits < self.min_digits:
            raise ValueError("max_digits must be >= min_digits")
        return self


class DataConfig(_Strict):
    source: Literal["reasoning_gym", "verl", "hf_local", "hf_hub"]
    task: TaskConfig
    num_sft: int = Field(ge=1)
    num_rl: int = Field(ge=1)
    num_eval: int = Field(ge=1)
    files: list[str]
    eval_files: list[str]
    hub_dataset: str | None
    hub_split: str
    out_dir: str
    chat_template: Literal["auto", "none"]

    @model_validator(mode="after")
    def _source_inputs(self) -> "DataConfig":
        if self.source in ("verl", "hf_local") and not self.files:
            raise ValueError(f"data.files must list at least one file when data.source is {self.source!r}")
        if self.source == "hf_hub" and not self.hub_dataset:
            raise ValueError("data.hub_dataset must name a dataset when data.source is 'hf_hub'")
        # dvc.yaml's input stages write FILE's fingerprint to data/inputs/<list>/FILE.json: a `..`
        # would put it outside data/inputs (where prepare no longer sees it, or over other files).
        for key in ("files", "eval_files"):
            for i, path in enumerate(getattr(self, key)):
                if ".." in PurePath(path).parts:
                    raise ValueError(f"data.{key}[{i}] ({path!r}) has a '..' segment, which dvc.yaml's input stage "
                                     "cannot track: use an absolute path or a path inside the project")
        return self


class TinyModelConfig(_Strict):
    hidden_size: int = Field(ge=8)
    num_hidden_layers: int = Field(ge=1)
    num_attention_heads: int = Field(ge=1)
    intermediate_size: int = Field(ge=8)
    max_position_embeddings: int = Field(ge=16)

    @model_validator(mode="after")
    def _heads_divide(self) -> "TinyModelConfig":
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be divisible by num_attention_heads")
        return self


class LoraConfig(_Strict):
    enabled: bool
    r: int = Field(ge=1)
    alpha: int = Field(ge=1)
    dropout: float = Field(ge=0.0, lt=1.0)
    target_modules: list[str]


class ModelConfig(_Strict):
    name_or_path: str
    tiny: TinyModelConfig
    lora: LoraConfig
    dtype: Literal["float32", "bfloat16", "float16"]
    mixed_precision: Literal["no", "bf16", "fp16"]
    gradient_checkpointing: bool
    lm_head_chunk_tokens: int = Field(ge=1)
    trust_remote_code: bool  # run a model folder's own Python (auto_map); passed to every from_pretrained

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _unquoted_no(cls, value: Any) -> Any:
        # YAML reads an unquoted `no` (params file or --set model.mixed_precision=no) as false
        return "no" if value is False else value

    @model_validator(mode="after")
    def _master_weights(self) -> "ModelConfig":
        if self.mixed_precision != "no" and self.dtype != "float32":
            raise ValueError(f"model.mixed_precision={self.mixed_precision!r} keeps fp32 master weights and needs "
                             f"model.dtype float32 (got {self.dtype!r}); for pure {self.dtype} training set "
                             "model.mixed_precision to 'no'")
        return self


class SFTConfig(_Strict):
    enabled: bool  # false: no warm start; models/sft is the base model itself and RL starts from it
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    min_lr: float = Field(ge=0)
    warmup_ratio: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    max_grad_norm: float = Field(gt=0)
    max_tokens_per_micro_batch: int = Field(ge=1)
    out_dir: str


class VLLMConfig(_Strict):
    gpu_memory_utilization: float = Field(gt=0, le=1)
    max_num_seqs: int = Field(ge=1)
    enforce_eager: bool
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    cpu_kvcache_space_gib: int = Field(ge=1)


class ImportanceSamplingConfig(_Strict):
    enabled: bool
    cap: float = Field(ge=1.0)
    level: Literal["token", "sequence"]


class RolloutConfig(_Strict):
    engine: Literal["hf", "vllm"]
    recompute_logprobs: bool
    decode_threads: int | None = Field(ge=1)
    vllm: VLLMConfig
    importance_sampling: ImportanceSamplingConfig

    @property
    def effective_recompute_logprobs(self) -> bool:
        """rollout.recompute_logprobs, with what forces it: whether old log-probs come from a trainer
        forward pass instead of the sampler.

        vLLM's kernels and precision differ from the trainer's, so its log-probs are only the
        behaviour policy's; the PPO ratio needs the trainer's own (the mismatch is then logged,
        and truncated importance sampling can correct for it).
        """
        return self.engine != "hf" or self.recompute_logprobs or self.importance_sampling.enabled


class RewardFunctionConfig(_Strict):
    """One of the user's reward functions (docs/verifiers.md, "Your own reward"). The file or module is
    checked and imported at load (components/config/reward_functions.py)."""

    # "file.py:name" (relative to the params file's folder, or absolute) or "package.module:name"
    path: str
    weight: float  # the item's reward is the weighted sum over reward.functions (TRL's reward_weights)

    @field_validator("path")
    @classmethod
    def _names_a_function(cls, value: str) -> str:
        target, _, name = value.rpartition(":")
        if not target.strip() or not name.isidentifier():
            raise ValueError("must look like 'file.py:function' or 'package.module:function'")
        return value


class RewardConfig(_Strict):
    correct_weight: float
    format_weight: float
    # a bound, not a tuning: each worker is a standing process, and 64 is past any gain on one host
    workers: int = Field(ge=0, le=64)
    timeout_s: float = Field(gt=0)
    # the user's reward functions; empty: the built-in verifiers. A plain string is {path: it, weight: 1.0}.
    functions: list[RewardFunctionConfig]

    @field_validator("functions", mode="before")
    @classmethod
    def _plain_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"path": item, "weight": 1.0} if isinstance(item, str) else item for item in value]
        return value


class BenchmarkConfig(_Strict):
    """One evaluation set: a prepared split of the task's own data, or a verl/HF-layout file."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    split: Literal["eval", "rl", "sft"] | None = None
    file: str | None = None
    limit: int | None = Field(default=None, ge=1)  # first N problems (quick looks); null = all

    @model_validator(mode="after")
    def _one_source(self) -> "BenchmarkConfig":
        if (self.split is None) == (self.file is None):
            raise ValueError(f"benchmark {self.name!r} needs exactly one of split or file")
        return self


class EvalConfig(_Strict):
    benchmarks: list[BenchmarkConfig] = Field(min_length=1)
    num_samples: int = Field(ge=1)

    @model_validator(mode="after")
    def _unique_names(self) -> "EvalConfig":
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError(f"eval.benchmarks names must be unique (got {names})")
        return self
    temperature: float = Field(gt=0)
    max_completion_length: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    metrics_file: str
    out_dir: str


class VerifyConfig(_Strict):
    score: Literal["greedy", "mean_at_k"]  # per-problem score the paired test compares
    min_gain: float = Field(ge=-1.0, le=1.0)
    confidence: float = Field(gt=0.5, lt=1.0)
    num_resamples: int = Field(ge=100)
    against_champion: bool
    out_dir: str
    metrics_file: str


class RegistryConfig(_Strict):
    # MLflow's model-name characters only: the name is quoted into registry search filter strings
    model_name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    alias: str = Field(min_length=1, pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")


class TrackingConfig(_Strict):
    experiment: str = Field(min_length=1)
    tracking_uri: str | None
    # Bounds on MLflow's HTTP client (MLFLOW_HTTP_REQUEST_TIMEOUT / _MAX_RETRIES / _BACKOFF_FACTOR):
    # its defaults (120 s, 7 retries, backoff 2) stall a stage about 4 minutes per call on a dead server.
    request_timeout_s: int = Field(ge=1)
    max_retries: int = Field(ge=0, le=10)  # MLflow refuses more than 10
    backoff_factor: int = Field(ge=0, le=120)  # seconds; waits 0, 2b, 4b, ... between retries


class Config(_Strict):
    seed: Seed
    data: DataConfig
    model: ModelConfig
    sft: SFTConfig
    rl: RLConfig
    rollout: RolloutConfig
    reward: RewardConfig
    eval: EvalConfig
    verify: VerifyConfig
    registry: RegistryConfig
    tracking: TrackingConfig

    @model_validator(mode="after")
    def _completion_fits_context(self) -> "Config":
        # The tiny model's context is known here; an HF model's only once loaded (run_rl checks it).
        if self.model.name_or_path == "tiny":  # components.model.factory.TINY
            context = self.model.tiny.max_position_embeddings
            for key, value in (("rl.max_completion_length", self.rl.max_completion_length),
                               ("eval.max_completion_length", self.eval.max_completion_length)):
                if value >= context:
                    raise ValueError(f"{key} ({value}) leaves no room for a prompt in the model's context "
                                     f"(model.tiny.max_position_embeddings = {context}); it must be below that")
        return self

    def flat(self) -> dict[str, Any]:
        """Dotted-key view for MLflow params, with the RL settings the run actually uses (rl.effective.*:
        the algorithm's published values where rl.* leaves them null)."""
        return {**_flatten(self.model_dump()), **_flatten(self.rl.effective.model_dump(), "rl.effective.")}


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out
