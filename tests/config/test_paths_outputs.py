"""Output settings that would delete data are refused at config load.

A stage replaces its output folder whole, so `--set rl.out_dir=models` used to wipe models/sft,
models/init and everything else under models/, and `--set verify.out_dir=reports` wiped
reports/eval and reports/validation, both exiting 0. Now any output that equals or contains
another output, an input, tracked data or the repository is a one-line ConfigError naming both
keys, and atomic_dir itself refuses to replace the working directory, the repository or a project.

Every atomic_dir test here works only inside tmp_path (the repository root is monkeypatched to a
folder there), so even with the guard removed nothing outside tmp_path can be replaced.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.infra import atomic_io as io_utils
from components.config import DEFAULT_PARAMS, FIXED_OUTPUTS, OUTPUT_KEYS, REPO_ROOT, ConfigError, load_config
from components.infra.atomic_io import UnsafeTargetError, atomic_dir


@pytest.mark.parametrize("override, names", [
    ("rl.out_dir=models", ["rl.out_dir ('models') contains sft.out_dir", "contains models/init"]),
    ("verify.out_dir=reports", ["verify.out_dir ('reports') contains eval.out_dir", "contains reports/validation"]),
    ("eval.out_dir=.", ["eval.out_dir ('.') is the working directory"]),
    ("eval.out_dir=./", ["eval.out_dir ('./') is the working directory"]),
    ("sft.out_dir=models/sft/..", ["sft.out_dir ('models/sft/..') contains rl.out_dir", "contains models/init"]),
    ("rl.out_dir=models/sft/", ["sft.out_dir ('models/sft') and rl.out_dir ('models/sft/') are the same path"]),
    ("rl.out_dir=models/init", ["rl.out_dir ('models/init') and models/init"]),
    ("rl.checkpoint_dir=models/rl/../rl/ckpt", ["rl.out_dir ('models/rl') contains rl.checkpoint_dir"]),
    ("eval.metrics_file=metrics/verify.json", ["eval.metrics_file", "verify.metrics_file", "same path"]),
    ("eval.metrics_file=reports/eval/m.json", ["eval.out_dir ('reports/eval') contains eval.metrics_file"]),
    ("data.out_dir=data", ["data.out_dir ('data') contains data/benchmarks"]),
    ("rl.out_dir=/", ["rl.out_dir ('/') is the working directory or a folder above it"]),
    (f"rl.out_dir={REPO_ROOT}", ["is the working directory"]),
    (f"rl.out_dir={REPO_ROOT / 'models'}", ["contains sft.out_dir"]),
    ("eval.metrics_file=params.yaml", ["eval.metrics_file ('params.yaml') is the params file"]),
    ("rl.out_dir=components", ["rl.out_dir ('components') is components/"]),
    ("rl.out_dir=mlflow", ["rl.out_dir ('mlflow') is mlflow/"]),
    ("rl.checkpoint_dir=flows/..", ["rl.checkpoint_dir ('flows/..') is the working directory"]),
    ("data.files=[models/rl/train.parquet]", ["rl.out_dir ('models/rl') contains data.files[0]"]),
])
def test_an_output_over_other_data_is_refused_naming_both(override, names, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # relative outputs are taken from the working directory, as the stages do
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    message = str(err.value)
    assert "\n" not in message
    for name in names:
        assert name in message, message


@pytest.mark.parametrize("override, names", [
    ("compare.out_dir=..", ["compare.out_dir ('..') is the working directory or a folder above it"]),
    ("compare.out_dir=reports", ["compare.out_dir ('reports') contains eval.out_dir"]),
])
def test_the_compare_harness_output_over_other_data_is_refused(override, names, monkeypatch):
    from components.compare.settings import check_compare_paths, load_compare

    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(ConfigError) as err:
        check_compare_paths(load_config(), load_compare(overrides=[override]), DEFAULT_PARAMS)
    for name in names:
        assert name in str(err.value), str(err.value)


@pytest.mark.parametrize("override", [
    "sft.out_dir=models/sft/",  # the same folder, spelled with a slash
    "rl.out_dir=models/rl2",
    "rl.checkpoint_dir=checkpoints/other",
    "eval.metrics_file=metrics/eval2.json",
])
def test_separate_outputs_are_accepted(override, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    load_config(overrides=[override])
    load_config(overrides=[f"rl.out_dir={tmp_path / 'rl'}", f"sft.out_dir={tmp_path / 'sft'}"])


def test_the_fixed_outputs_are_those_the_stages_write():
    from components.stages import common as stages

    assert set(FIXED_OUTPUTS.values()) == {stages.INIT_DIR.as_posix(), stages.VALIDATION_DIR.as_posix(),
                                           stages.RL_PLOTS_DIR.as_posix()}


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def test_every_dvc_output_is_checked():
    """A stage output added to dvc.yaml must be covered by the overlap check too."""
    cfg = load_config()
    checked = {str(Path(_get(cfg, k))) for k in OUTPUT_KEYS} | set(FIXED_OUTPUTS.values())
    dvc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    declared = {e if isinstance(e, str) else next(iter(e)) for s in dvc.values()
                for section in ("outs", "metrics", "plots") for e in s.get(section) or []}
    assert declared and declared <= checked, declared - checked


def _workspace(tmp_path: Path) -> Path:
    """A throwaway folder with params.yaml and every stage's outputs, each holding a marker file."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text(DEFAULT_PARAMS.read_text())
    for folder in ("models/sft", "models/init", "models/rl", "reports/eval", "reports/validation", "data/prepared"):
        (ws / folder).mkdir(parents=True)
        (ws / folder / "keep.txt").write_text(folder)
    return ws


def _markers(ws: Path) -> list[str]:
    return sorted(p.relative_to(ws).as_posix() for p in ws.rglob("keep.txt"))


@pytest.mark.parametrize("stage, override, names", [
    ("rl", "rl.out_dir=models", ["rl.out_dir", "sft.out_dir", "models/init"]),
    ("verify", "verify.out_dir=reports", ["verify.out_dir", "eval.out_dir", "reports/validation"]),
    ("evaluate", "eval.out_dir=.", ["eval.out_dir", "working directory"]),
])
def test_cli_refuses_in_one_line_and_deletes_nothing(stage, override, names, tmp_path):
    ws = _workspace(tmp_path)  # the CLI runs there, never in this checkout
    before = _markers(ws)
    env = {k: v for k, v in os.environ.items() if k not in ("PIPO_PRESET", "PIPO_FAULT", "PIPO_PARENT_RUN_ID")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    out = subprocess.run([sys.executable, "-m", "components.cli", stage, "--set", override, "--params", "params.yaml"],
                         cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: output paths overlap"), out.stderr
    for name in names:
        assert name in lines[0]
    assert _markers(ws) == before


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """tmp_path/outer/repo stands in for the repository (cwd = tmp_path/outer/repo/work)."""
    repo = tmp_path / "outer" / "repo"
    work = repo / "work"
    work.mkdir(parents=True)
    (work / "precious.txt").write_text("x")
    monkeypatch.setattr(io_utils, "REPO_ROOT", repo)
    monkeypatch.chdir(work)
    return repo


def test_atomic_dir_refuses_the_working_directory_and_above(sandbox):
    work = sandbox / "work"
    for target in (work, Path("."), Path("sub/.."), Path("./")):
        with pytest.raises(UnsafeTargetError, match="working directory"):
            with atomic_dir(target) as tmp:
                (tmp / "out.txt").write_text("new")
    assert sorted(p.name for p in work.iterdir()) == ["precious.txt"]
    assert sorted(p.name for p in sandbox.iterdir()) == ["work"]  # no temporary sibling was made


def test_atomic_dir_refuses_the_repository_and_folders_above_it(sandbox):
    for target in (sandbox, sandbox.parent, Path("..")):
        with pytest.raises(UnsafeTargetError, match="working directory|repository root"):
            with atomic_dir(target):
                pass
    assert (sandbox / "work" / "precious.txt").exists()
    assert sorted(p.name for p in sandbox.parent.iterdir()) == ["repo"]


def test_atomic_dir_refuses_the_repository_from_another_working_directory(sandbox, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(UnsafeTargetError, match="repository root"):
        with atomic_dir(sandbox):
            pass
    assert (sandbox / "work" / "precious.txt").exists()


def test_atomic_dir_refuses_a_project_folder(sandbox):
    project = sandbox / "work" / "project"
    project.mkdir()
    (project / "params.yaml").write_text("seed: 0\n")
    with pytest.raises(UnsafeTargetError, match="params.yaml"):
        with atomic_dir(project):
            pass
    assert (project / "params.yaml").exists()


def test_atomic_dir_still_replaces_a_stage_folder(sandbox):
    out = sandbox / "work" / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with atomic_dir("out") as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
