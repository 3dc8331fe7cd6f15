"""Values that used to load silently (or crash with a raw traceback) are ConfigErrors naming the key:
negative seeds, infinite or NaN floats, bools where ints are expected, completions longer than the
model's context, keys given twice in a params file or preset, and unparsable `--set` values."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from components.config import DEFAULT_PARAMS, REPO_ROOT, ConfigError, load_config


def _refused(overrides: list[str], key: str) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert re.search(rf"(^|\W){re.escape(key)}\b", str(err.value)), str(err.value)
    return str(err.value)


@pytest.mark.parametrize("override, key", [
    ("seed=-1", "seed"),
    ("seed=4294967296", "seed"),  # numpy refuses seeds past 2**32 - 1
    ("rl.lr=.inf", "rl.lr"),
    ("rl.lr=.nan", "rl.lr"),
    ("rl.lr=nan", "rl.lr"),
    ("rl.lr=-.inf", "rl.lr"),
    ("sft.lr=inf", "sft.lr"),
    ("rl.iterations=true", "rl.iterations"),
    ("rl.iterations=4.0", "rl.iterations"),
    ("rl.checkpoint_every=false", "rl.checkpoint_every"),
    ("rl.lr=true", "rl.lr"),
    ("registry.model_name=\"pipo' OR name != 'x\"", "registry.model_name"),  # a quote reached MLflow's filter string
    ("registry.model_name=a/b", "registry.model_name"),
    (f"registry.model_name={'m' * 129}", "registry.model_name"),
    ("reward.workers=65", "reward.workers"),  # each is a standing process
])
def test_bad_value_is_a_config_error_naming_the_key(override, key):
    _refused([override], key)


def _leaves(tree, prefix=""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def test_every_float_field_must_be_finite():
    floats = [k for k, v in _leaves(load_config().model_dump()) if type(v) is float]
    assert "rl.lr" in floats and "reward.timeout_s" in floats and len(floats) > 20
    for key in floats:
        for bad in (".inf", "-.inf", ".nan"):
            _refused([f"{key}={bad}"], key)


def test_every_int_field_is_strict():
    ints = [k for k, v in _leaves(load_config().model_dump()) if type(v) is int]
    assert "rl.iterations" in ints and "seed" in ints and len(ints) > 20
    for key in ints:
        _refused([f"{key}=true"], key)


def test_completion_longer_than_the_tiny_models_context_is_refused():
    context = load_config().model.tiny.max_position_embeddings
    for key in ("rl.max_completion_length", "eval.max_completion_length"):
        for value in (context, context + 100):
            message = _refused([f"{key}={value}"], key)
            assert "model.tiny.max_position_embeddings" in message
    # shrinking the context instead names the same pair
    _refused([f"model.tiny.max_position_embeddings={load_config().rl.max_completion_length}"],
             "rl.max_completion_length")
    assert load_config(overrides=[f"rl.max_completion_length={context - 1}"]).rl.max_completion_length == context - 1


def test_completion_longer_than_an_hf_models_context_is_refused_at_the_rl_stage(tmp_path, monkeypatch):
    """For an HF model the context is only known once loaded: run_rl checks it before any training."""
    from components.stages import rl as rl_stage
    from components.model.factory import initial_policy
    from components.infra.atomic_io import atomic_dir
    from components.model.io import save_policy
    from components.model.lineage import write_lineage
    from components.stages.common import POINTER_FILE

    tiny = load_config(overrides=["model.tiny.hidden_size=32", "model.tiny.num_hidden_layers=1",
                                  "model.tiny.intermediate_size=64"])
    model, tok = initial_policy(tiny.model, seed=0)
    monkeypatch.chdir(tmp_path)  # a local model folder must lie in models/base/ (of the project or of cwd)
    save_policy(model, tok, tmp_path / "models/base")  # a plain HF folder with max_position_embeddings = 64
    # written as the stages write them, so they are the pipeline's own outputs outside the repository
    with atomic_dir(tmp_path / "data") as data:
        pd.DataFrame({"id": ["a"], "source": ["x"], "prompt": ["1+1="], "answer": ["2"]}).to_parquet(
            data / "rl.parquet")
    context = model.config.max_position_embeddings
    cfg = load_config(overrides=[f"model.name_or_path={tmp_path / 'models/base'}", f"sft.out_dir={tmp_path / 'sft'}",
                                 f"data.out_dir={tmp_path / 'data'}", f"rl.out_dir={tmp_path / 'rl'}",
                                 f"rl.checkpoint_dir={tmp_path / 'ckpt'}", f"rl.max_completion_length={context}"])
    with atomic_dir(tmp_path / "sft") as sft:  # as sft.enabled=false writes it: a pointer to the base model
        (sft / POINTER_FILE).write_text(json.dumps({"name_or_path": cfg.model.name_or_path}))
        write_lineage(sft, cfg.model, sft_trained=False)

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("components.rl.trainer.train_rl", no_training)
    with pytest.raises(ConfigError, match=rf"rl\.max_completion_length \({context}\).*max_position_embeddings"):
        rl_stage.run(cfg)
    assert not (tmp_path / "rl").exists() and not (tmp_path / "ckpt").exists()


def test_duplicate_key_in_params_is_refused_naming_key_and_line(tmp_path):
    lines = DEFAULT_PARAMS.read_text().splitlines()
    rl_at = lines.index("rl:")
    original = next(i for i in range(rl_at, len(lines)) if lines[i].startswith("  iterations:"))
    lines.insert(rl_at + 1, "  iterations: 7")
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(lines) + "\nseed: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    # the first duplicate found is rl.iterations: the original line moved down by one
    assert f"duplicate key rl.iterations at line {original + 2}" in message, message
    assert f"first at line {rl_at + 2}" in message and str(path) in message


def test_duplicate_top_level_key_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    text = DEFAULT_PARAMS.read_text()
    path.write_text(text + "\nseed: 3\n")
    with pytest.raises(ConfigError, match=rf"duplicate key seed at line {len(text.splitlines()) + 2}"):
        load_config(path)


def test_duplicate_key_in_a_preset_is_refused(tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text("rl:\n  lr: 1.0e-4\n  lr: 2.0e-4\n")
    with pytest.raises(ConfigError, match=r"preset .*duplicate key rl\.lr at line 3 \(first at line 2\)"):
        load_config(presets=[preset])


@pytest.mark.parametrize("override, expected", [
    ("rl.lr=[", r"override 'rl\.lr=\[': the value is not valid YAML"),
    ("rl.lr={a: 1", r"override 'rl\.lr=\{a: 1'"),
    ("rl", r"override 'rl' must look like key\.path=value"),
    ("rl.pipo={window: 2, window: 3}", r"duplicate key window"),
])
def test_bad_override_is_a_one_line_config_error(override, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        load_config(overrides=[override])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override", ["rl.lr=[", "rl", "rl.iterations=true"])
def test_cli_reports_a_bad_override_in_one_error_line_and_exits_2(override, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(DEFAULT_PARAMS.read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("PIPO_PRESET", "PIPO_FAULT")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    out = subprocess.run([sys.executable, "-m", "components.cli", "rl", "--params", str(params), "--set", override],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr, out.stderr
    if override != "rl.iterations=true":  # a validation error lists every bad key, one per line
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
