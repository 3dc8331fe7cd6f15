"""The eval section of the config and the GPU preset: bad values name their key, and the preset's
benchmarks point at real files."""

from __future__ import annotations

import pytest
import yaml

from components.config import REPO_ROOT, ConfigError, load_config
from components.eval.benchmarks import load_benchmark


def test_eval_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="eval.num_samples"):
        load_config(overrides=["eval.num_samples=0"])
    with pytest.raises(ConfigError, match="exactly one of split or file"):
        load_config(overrides=["eval.benchmarks=[{name: x}]"])
    with pytest.raises(ConfigError, match="unique"):
        load_config(overrides=["eval.benchmarks=[{name: x, split: eval}, {name: x, split: rl}]"])


def test_gpu_preset_loads_with_every_key_in_effect_and_its_benchmarks_are_real_files():
    preset = yaml.safe_load((REPO_ROOT / "presets" / "gpu.yaml").read_text())
    cfg = load_config(presets=[REPO_ROOT / "presets" / "gpu.yaml"])
    loaded = cfg.model_dump(mode="json")

    def check(given, held, key):
        if isinstance(given, dict):
            for k, v in given.items():
                check(v, held[k], f"{key}.{k}")
        elif isinstance(given, list) and given and isinstance(given[0], dict):  # e.g. eval.benchmarks
            assert len(held) == len(given), key
            for g, h in zip(given, held):
                check(g, h, key)
        else:
            assert held == given, f"{key}: the preset says {given!r}, the config holds {held!r}"

    check(preset, loaded, "preset")
    assert cfg.eval.benchmarks and all(b.file for b in cfg.eval.benchmarks)
    for b in cfg.eval.benchmarks:
        assert load_benchmark(b, "unused").shape[0] > 0
    with pytest.raises(ConfigError, match="rl.no_such_key: unknown key"):
        from components.config import DEFAULT_PARAMS, read_yaml, merge_preset

        merge_preset(read_yaml(DEFAULT_PARAMS, "params"), {"rl": {"no_such_key": 1}}, "test")
