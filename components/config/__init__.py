"""Typed, validated configuration loaded from params.yaml and advanced.yaml (together the single source
of defaults: the method's settings, which DVC tracks, and the tuning knobs, which it does not).

No default lives here: every field is required, so a value missing from both files is an
error rather than a silent second default. Unknown keys and wrong types raise ConfigError
naming the dotted key.

    schema.py   the pydantic models (Config and its sections) on a strict base model
    paths.py    REPO_ROOT, DEFAULT_PARAMS and the output-path checks run at load (overlap, ownership)
    ownership.py which paths outside the project the pipeline may replace (its own, marked ones)
    loading.py  YAML reading, advanced.yaml merged in, presets, `--set` overrides, load_config and its errors
    reward_functions.py  reward.functions: the user's reward files checked, imported and made absolute

Callers import from here (`from components.config import Config, load_config`).
"""

from __future__ import annotations

from components.config.loading import (
    PRESET_ENV,
    DuplicateKeyError,
    apply_overrides,
    load_config,
    load_params_tree,
    load_yaml_text,
    merge_preset,
    read_yaml,
)
from components.config.paths import (
    ADVANCED_NAME,
    DEFAULT_PARAMS,
    FIXED_OUTPUTS,
    OUTPUT_KEYS,
    PROJECT_DIRS,
    REPO_ROOT,
    check_output_paths,
)
from components.config.schema import (
    ALGORITHMS,
    BenchmarkConfig,
    Config,
    ConfigError,
    DAPOConfig,
    DataConfig,
    EvalConfig,
    ImportanceSamplingConfig,
    LoraConfig,
    ModelConfig,
    PIPOConfig,
    RegistryConfig,
    RewardConfig,
    RewardFunctionConfig,
    RLConfig,
    RolloutConfig,
    Seed,
    SFTConfig,
    TaskConfig,
    TinyModelConfig,
    TrackingConfig,
    VerifyConfig,
    VLLMConfig,
)

__all__ = [
    "ADVANCED_NAME", "ALGORITHMS", "DEFAULT_PARAMS", "FIXED_OUTPUTS", "OUTPUT_KEYS", "PRESET_ENV", "PROJECT_DIRS", "REPO_ROOT",
    "BenchmarkConfig", "Config", "ConfigError", "DAPOConfig", "DataConfig",
    "DuplicateKeyError", "EvalConfig", "ImportanceSamplingConfig", "LoraConfig", "ModelConfig", "PIPOConfig",
    "RegistryConfig", "RewardConfig", "RewardFunctionConfig", "RLConfig", "RolloutConfig", "SFTConfig", "Seed",
    "TaskConfig", "TinyModelConfig", "TrackingConfig", "VerifyConfig", "VLLMConfig",
    "apply_overrides", "check_output_paths", "load_config", "load_params_tree", "load_yaml_text", "merge_preset", "read_yaml",
]
