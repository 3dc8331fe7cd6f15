"""flows/experiment.py: how a deployment run's overrides and preset become a DVC experiment.

The run itself, through the served deployment, is tests/e2e/test_user_job.py; these pin the pieces down.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from components.config import ConfigError, load_config
from flows import experiment

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def test_values_keep_their_types_in_dvcs_override_grammar():
    assert experiment.override_value("models/base", "k") == "'models/base'"
    assert experiment.override_value("1", "k") == "'1'"  # a string stays a string, never a number
    assert experiment.override_value("it's", "k") == '"it\'s"'
    assert experiment.override_value(None, "k") == "null"
    assert experiment.override_value(False, "k") == "false"
    assert experiment.override_value(3, "k") == "3" and experiment.override_value(0.001, "k") == "0.001"
    assert experiment.override_value(["a.py:f", 2], "k") == "['a.py:f', 2]"
    assert experiment.override_value({"name": "x", "split": "eval"}, "k") == "{name: 'x', split: 'eval'}"
    with pytest.raises(ConfigError, match="reward.functions"):
        experiment.override_value("a'b\"c", "reward.functions")


def test_a_preset_becomes_settings_and_an_override_wins(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("rl:\n  lr: 1.0e-6\n  pipo: {window: 4}\nmodel: {lora: {enabled: true}}\n")
    settings = experiment.set_params(["rl.lr=5e-5", "rl.iterations=7"], [str(preset)])
    assert settings == ["rl.lr='5e-5'", "rl.pipo.window=4", "model.lora.enabled=true", "rl.iterations=7"]


def test_dvc_reads_the_settings_back_as_load_config_does(tmp_path):
    """The -S strings, applied by DVC itself, give the config that load_config gives from the overrides."""
    from components.config import REPO_ROOT

    overrides = ["reward.functions=[rewards/example.py:compute_score]", "data.files=[a b.parquet]",
                 "model.name_or_path=models/base", "rl.iterations=7", "rl.pipo.min_history=null"]
    repo = tmp_path / "r"
    repo.mkdir()
    (repo / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    from dvc.utils.hydra import apply_overrides

    apply_overrides(repo / "params.yaml", experiment.set_params(overrides, []))
    import yaml

    applied = yaml.safe_load((repo / "params.yaml").read_text())
    assert applied["reward"]["functions"] == ["rewards/example.py:compute_score"]
    assert applied["data"]["files"] == ["a b.parquet"]
    assert applied["model"]["name_or_path"] == "models/base"
    assert applied["rl"]["iterations"] == 7 and applied["rl"]["pipo"]["min_history"] is None


def test_a_setting_of_advanced_yaml_goes_there_and_reruns_nothing(tmp_path):
    """A knob that lives in advanced.yaml (directly or through a preset) becomes `-S advanced.yaml:KEY=V`; a real
    `dvc exp run` writes it there (params.yaml no longer holds it),
    the config loads with it, and the stage reading params.yaml is not rerun for it."""
    import sys

    import yaml

    from components.config import REPO_ROOT

    preset = tmp_path / "p.yaml"
    preset.write_text("model: {gradient_checkpointing: true, lora: {enabled: true}}\n")
    settings = experiment.set_params(["rl.update_threads=2"], [str(preset)])
    assert settings == ["advanced.yaml:model.gradient_checkpointing=true", "model.lora.enabled=true",
                        "advanced.yaml:rl.update_threads=2"]
    repo = tmp_path / "r"
    repo.mkdir()
    for name in ("params.yaml", "advanced.yaml"):
        (repo / name).write_text((REPO_ROOT / name).read_text())
    (repo / "dvc.yaml").write_text("stages:\n  read:\n    cmd: date +%s%N > out.txt\n    params: [model.lora]\n"
                                   "    outs: [out.txt]\n")
    dvc = str(Path(sys.executable).with_name("dvc"))
    for cmd in (["git", "init", "-q"], [dvc, "init", "-q"], [dvc, "repro", "-q"], ["git", "add", "-A"],
                [*GIT, "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    first = (repo / "out.txt").read_text()
    only_advanced = [s for s in settings if s.startswith("advanced.yaml:")]
    done = subprocess.run([dvc, "exp", "run", *[a for s in only_advanced for a in ("-S", s)]], cwd=repo,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "out.txt").read_text() == first  # nothing reran
    cfg = load_config(repo / "params.yaml")
    assert cfg.rl.update_threads == 2 and cfg.model.gradient_checkpointing is True and not cfg.model.lora.enabled
    assert "update_threads" not in yaml.safe_load((repo / "params.yaml").read_text())["rl"]
    shown = subprocess.run([dvc, "exp", "show", "--csv"], cwd=repo, capture_output=True, text=True, check=True)
    columns = shown.stdout.splitlines()[0].split(",")
    assert "model.lora.enabled" in columns and "rl.update_threads" not in columns
    assert "model.gradient_checkpointing" not in columns


def _git_repo(root: Path) -> Path:
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".gitignore").write_text("ignored/\n")
    (root / "tracked.parquet").write_text("t")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "init"], cwd=root, check=True)
    return root


def test_untracked_inputs_are_those_the_experiments_copy_would_lack(tmp_path):
    root = _git_repo(tmp_path / "r")
    (root / "new.parquet").write_text("n")
    (root / "ignored").mkdir()
    (root / "ignored" / "e.parquet").write_text("e")
    (root / "model").mkdir()
    (root / "model" / "config.json").write_text("{}")
    (root / "dvc.parquet").write_text("d")
    (root / "dvc.parquet.dvc").write_text("outs: []")
    outside = tmp_path / "outside.parquet"
    outside.write_text("o")
    cfg = load_config(overrides=["data.source=verl", f"data.files=[tracked.parquet, new.parquet, {outside}]",
                                 "data.eval_files=[ignored/e.parquet, dvc.parquet]", "sft.enabled=false"])
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"name_or_path": "model"})})
    assert experiment.untracked_inputs(cfg, root) == ["new.parquet", "ignored/e.parquet", "model"]


def test_a_bad_or_taken_experiment_name_is_refused_before_anything_runs(tmp_path):
    root = _git_repo(tmp_path / "r")
    with pytest.raises(ConfigError, match="experiment name"):
        experiment.check_name("../x", root)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert experiment.check_name("my-job", root) == "my-job"
    subprocess.run(["git", "update-ref", f"refs/exps/{head[:2]}/{head[2:]}/my-job", head], cwd=root, check=True)
    with pytest.raises(ConfigError, match="already exists"):
        experiment.check_name("my-job", root)


def test_runs_of_an_experiment_in_dvcs_copy_go_to_the_working_trees_store(tmp_path, monkeypatch):
    from components.infra import tracking

    copy = tmp_path / "work" / ".dvc" / "tmp" / "exps" / "standalone" / "tmpabc"
    monkeypatch.setattr(tracking, "REPO_ROOT", copy)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "work"))
    assert tracking.store_root() == tmp_path / "work"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "elsewhere"))  # a DVC_ROOT that did not make this copy
    assert tracking.store_root() == copy
