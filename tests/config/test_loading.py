"""params.yaml loads into the typed config; bad keys and values are named in the error."""

import pytest
import yaml

from components.config import DEFAULT_PARAMS, ConfigError, load_config


def write_params(tmp_path, mutate):
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_default_params_load():
    cfg = load_config()
    assert cfg.rl.num_generations >= 2
    assert cfg.flat()["rl.lr"] == cfg.rl.lr


def test_unknown_key_is_named(tmp_path):
    path = write_params(tmp_path, lambda r: r["rl"].update(learning_rate=1e-3))
    with pytest.raises(ConfigError, match=r"rl\.learning_rate: unknown key"):
        load_config(path)


def test_wrong_type_is_named(tmp_path):
    path = write_params(tmp_path, lambda r: r["sft"].update(epochs="many"))
    with pytest.raises(ConfigError, match=r"sft\.epochs"):
        load_config(path)


def test_missing_key_is_named(tmp_path):
    path = write_params(tmp_path, lambda r: r["eval"].pop("num_samples"))
    with pytest.raises(ConfigError, match=r"eval\.num_samples: missing"):
        load_config(path)


def test_unknown_algorithm_names_allowed_values():
    with pytest.raises(ConfigError, match=r"rl\.algorithm.*allowed: grpo"):
        load_config(overrides=["rl.algorithm=ppo2"])


def test_num_generations_below_two_rejected():
    with pytest.raises(ConfigError, match=r"num_generations must be >= 2"):
        load_config(overrides=["rl.num_generations=1"])


def test_override_parses_yaml_values():
    cfg = load_config(overrides=["rl.lr=2e-4", "rl.mask_truncated_completions=true"])
    assert cfg.rl.lr == 2e-4 and cfg.rl.mask_truncated_completions is True


def test_override_of_unknown_key_rejected():
    with pytest.raises(ConfigError, match=r"rl\.nope.*unknown key"):
        load_config(overrides=["rl.nope=1"])


def test_missing_params_file_named(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_config(tmp_path / "absent.yaml")


def test_rollout_and_reward_errors_name_the_key():
    import pytest

    from components.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="rollout.engine"):
        load_config(overrides=["rollout.engine=sglang"])
    with pytest.raises(ConfigError, match="rollout.importance_sampling.cap"):
        load_config(overrides=["rollout.importance_sampling.cap=0.5"])
    with pytest.raises(ConfigError, match="reward.timeout_s"):
        load_config(overrides=["reward.timeout_s=0"])
    assert load_config(overrides=["rollout.engine=vllm"]).rollout.effective_recompute_logprobs
    assert not load_config().rollout.effective_recompute_logprobs


def test_presets_come_from_the_environment_too(monkeypatch, tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("rl:\n  lr: 0.25\n")
    monkeypatch.delenv("PIPO_PRESET", raising=False)
    assert load_config().rl.lr != 0.25
    monkeypatch.setenv("PIPO_PRESET", str(preset))
    assert load_config().rl.lr == 0.25


def test_every_algorithm_record_names_registered_blocks():
    """rl.algorithm's allowed names are the algorithm records' (components/config/algorithms); each
    record's estimator and loss must be registered, or a name would pass validation and fail at the rl stage."""
    from components.config import ALGORITHMS, algorithms
    from components.rl.advantages import ADVANTAGES
    from components.rl.losses import POLICY_LOSSES

    assert ALGORITHMS == algorithms.names() == ("grpo", "dr_grpo", "dapo", "gspo")
    assert all(algorithms.get(n).advantage in ADVANTAGES and algorithms.get(n).policy_loss in POLICY_LOSSES
               for n in ALGORITHMS)


def test_the_config_loads_without_torch():
    """Params are checked before any stage imports torch: the config must not import it (nor the
    torch-backed registries in components.rl), which is why the algorithm records live in the config."""
    import subprocess
    import sys

    code = ("import sys; import components.config as c; c.load_config(); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('components.rl')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=DEFAULT_PARAMS.parent)
    assert out.stdout.strip() == "[]", out.stdout


def test_advanced_knobs_keep_their_names_under_set_and_presets(tmp_path):
    """advanced.yaml is merged into the params tree before presets and --set: a knob moved there is still
    cfg.rl.update_threads, `--set rl.update_threads=2` and a preset's rl.update_threads."""
    advanced = yaml.safe_load((DEFAULT_PARAMS.parent / "advanced.yaml").read_text())
    params = yaml.safe_load(DEFAULT_PARAMS.read_text())
    assert "update_threads" in advanced["rl"] and "update_threads" not in params["rl"]
    assert load_config().rl.log_every == advanced["rl"]["log_every"]
    assert load_config(overrides=["rl.update_threads=2"]).rl.update_threads == 2
    preset = tmp_path / "p.yaml"
    preset.write_text("rl:\n  update_threads: 3\n  lr: 0.5\nrollout:\n  vllm:\n    max_num_seqs: 7\n")
    cfg = load_config(presets=[preset], overrides=["rl.lr=0.25"])
    assert (cfg.rl.update_threads, cfg.rl.lr, cfg.rollout.vllm.max_num_seqs) == (3, 0.25, 7)
    assert cfg.rollout.vllm.dtype == params["rollout"]["vllm"]["dtype"]  # a section split over both files


def test_a_key_in_both_params_and_advanced_is_an_error_naming_it_and_both_files(tmp_path):
    path = write_params(tmp_path, lambda r: r["rl"].update(log_every=5))
    (tmp_path / "advanced.yaml").write_text((DEFAULT_PARAMS.parent / "advanced.yaml").read_text())
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "rl.log_every is set in both" in message and str(path) in message
    assert str(tmp_path / "advanced.yaml") in message and "\n" not in message


def test_params_and_advanced_hold_disjoint_keys():
    def leaves(tree, prefix=""):
        for k, v in tree.items():
            yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]

    params = set(leaves(yaml.safe_load(DEFAULT_PARAMS.read_text())))
    advanced = set(leaves(yaml.safe_load((DEFAULT_PARAMS.parent / "advanced.yaml").read_text())))
    assert not params & advanced and len(advanced) >= 25
