"""The eval section of the config and the GPU preset: bad values name their key, and the preset's
benchmarks point at real files."""

from __future__ import annotations

import pytest

from components.config import ConfigError, load_config
from components.eval.benchmarks import load_benchmark


def test_eval_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="eval.num_samples"):
        load_config(overrides=["eval.num_samples=0"])
    with pytest.raises(ConfigError, match="exactly one of split or file"):
        load_config(overrides=["eval.benchmarks=[{name: x}]"])
    with pytest.raises(ConfigError, match="unique"):
        load_config(overrides=["eval.benchmarks=[{name: x, split: eval}, {name: x, split: rl}]"])


def test_gpu_preset_is_valid_and_points_at_real_files():
    cfg = load_config(presets=["presets/gpu.yaml"])
    assert cfg.rollout.engine == "vllm" and [b.name for b in cfg.eval.benchmarks] == ["math500", "aime25", "amc23"]
    for b in cfg.eval.benchmarks:
        assert load_benchmark(b, "unused").shape[0] > 0
    with pytest.raises(ConfigError, match="rl.no_such_key: unknown key"):
        from components.config import DEFAULT_PARAMS, read_yaml, merge_preset

        merge_preset(read_yaml(DEFAULT_PARAMS, "params"), {"rl": {"no_such_key": 1}}, "test")
