"""An output outside the repository never replaces what the pipeline did not create.

`prepare --set data.out_dir=../victim` (a folder beside the repository holding a user's file)
used to exit 0 with the user's file gone, and /etc, /usr or $HOME were accepted as outputs. Now
outside the project an output must be new, empty, or a folder the pipeline created (marked with
.pipo-output): config load refuses anything else naming the key (exit 2), and atomic_dir /
atomic_write_text refuse it again at write time, symlinks resolved.

The atomic_io tests run in a sandbox under tmp_path (the repository root is monkeypatched there).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.config import DEFAULT_PARAMS, OUTPUT_KEYS, REPO_ROOT, ConfigError, load_config
from components.config.ownership import MARKER
from components.infra import atomic_io
from components.infra.atomic_io import UnsafeTargetError, atomic_dir, atomic_write_json, atomic_write_text


def _victim(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "thesis.tex").write_text("a user's only copy")
    return folder


def test_cli_refuses_an_out_dir_beside_the_repository_and_keeps_the_users_file(tmp_path):
    ws = tmp_path / "ws"  # stands in for the repository (the CLI never runs in this checkout)
    ws.mkdir()
    (ws / "params.yaml").write_text(DEFAULT_PARAMS.read_text())
    victim = _victim(tmp_path / "victim")
    env = {k: v for k, v in os.environ.items() if k not in ("PIPO_PRESET", "PIPO_FAULT", "PIPO_PARENT_RUN_ID")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    out = subprocess.run([sys.executable, "-m", "components.cli", "prepare", "--params", "params.yaml",
                          "--set", "data.out_dir=../victim", "--set", "data.num_sft=5", "--set", "data.num_rl=5",
                          "--set", "data.num_eval=5"], cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "data.out_dir ('../victim')" in lines[0] and str(victim) in lines[0], lines[0]
    assert sorted(p.name for p in victim.iterdir()) == ["thesis.tex"]
    assert (victim / "thesis.tex").read_text() == "a user's only copy"


def _load_with_compare(overrides: list[str]) -> None:
    """The pipeline's config and the comparison harness's, checked as `make compare` checks them."""
    from components.compare.settings import check_compare_paths, load_compare, split_overrides

    runs, harness = split_overrides(overrides)
    check_compare_paths(load_config(overrides=runs), load_compare(overrides=harness), DEFAULT_PARAMS)


@pytest.mark.parametrize("key", OUTPUT_KEYS + ("compare.out_dir", "compare.report"))
def test_config_refuses_every_output_over_a_users_folder(key, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    victim = _victim(tmp_path / "victim")
    value = victim / "metrics.json" if key.endswith(("metrics_file", "report")) else victim
    with pytest.raises(ConfigError) as err:
        _load_with_compare([f"{key}={value}"])
    message = str(err.value)
    assert "\n" not in message and f"{key} ('{value}')" in message and str(victim) in message, message


@pytest.mark.parametrize("folder", ["/etc", "/usr", str(Path.home())])
def test_config_refuses_system_folders(folder, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    for key in ("data.out_dir", "rl.checkpoint_dir", "compare.out_dir"):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            _load_with_compare([f"{key}={folder}"])
    with pytest.raises(ConfigError, match=r"eval\.metrics_file"):
        load_config(overrides=[f"eval.metrics_file={Path(folder) / '.bashrc'}"])


def test_config_accepts_new_empty_and_pipeline_made_folders_outside_only(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    (tmp_path / "empty").mkdir()
    load_config(overrides=[f"data.out_dir={tmp_path / 'new' / 'data'}", f"rl.checkpoint_dir={tmp_path / 'empty'}",
                           f"eval.metrics_file={tmp_path / 'm' / 'eval.json'}"])
    with atomic_dir(tmp_path / "made") as tmp:  # a previous run's output
        (tmp / "rl.parquet").write_text("x")
    atomic_write_json(tmp_path / "metrics" / "eval.json", {"a": 1})
    load_config(overrides=[f"data.out_dir={tmp_path / 'made'}", f"eval.metrics_file={tmp_path / 'metrics' / 'eval.json'}"])
    with pytest.raises(ConfigError, match="did not create"):  # beside them, a folder the pipeline did not make
        load_config(overrides=[f"data.out_dir={_victim(tmp_path / 'victim')}"])


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """tmp_path/repo stands in for the repository (the cwd); tmp_path/outside is beside it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "outside").mkdir()
    monkeypatch.setattr(atomic_io, "REPO_ROOT", repo)
    monkeypatch.chdir(repo)
    return tmp_path


def test_atomic_dir_refuses_a_users_folder_outside_the_repository(sandbox):
    victim = _victim(sandbox / "outside" / "victim")
    with pytest.raises(UnsafeTargetError, match="did not create"):
        with atomic_dir(victim) as tmp:
            (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in victim.iterdir()) == ["thesis.tex"]
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim"]  # no temporary sibling either


def test_a_symlink_in_the_repository_does_not_bypass_the_rule(sandbox):
    victim = _victim(sandbox / "outside" / "victim")
    (sandbox / "repo" / "models").mkdir()
    (sandbox / "repo" / "models" / "rl").symlink_to(victim)
    with pytest.raises(UnsafeTargetError, match="did not create"):
        with atomic_dir("models/rl"):
            pass
    (sandbox / "repo" / "metrics").symlink_to(victim)
    with pytest.raises(UnsafeTargetError, match="did not create"):
        atomic_write_text("metrics/thesis.tex", "{}")
    assert (victim / "thesis.tex").read_text() == "a user's only copy"


def test_atomic_write_refuses_to_overwrite_a_users_file_outside(sandbox):
    bashrc = sandbox / "outside" / ".bashrc"
    bashrc.write_text("export PATH=...")
    with pytest.raises(UnsafeTargetError, match=r"refusing to overwrite .*\.bashrc"):
        atomic_write_json(bashrc, {"pass@1": 0.5})
    assert bashrc.read_text() == "export PATH=..."
    assert sorted(p.name for p in bashrc.parent.iterdir()) == [".bashrc"]


def test_folders_the_pipeline_makes_outside_are_marked_and_replaceable(sandbox):
    out = sandbox / "outside" / "runs" / "data"
    for version in ("1", "2"):
        with atomic_dir(out) as tmp:
            (tmp / "v.txt").write_text(version)
    assert (sandbox / "outside" / "runs" / MARKER).is_file()  # the topmost folder it created
    assert (out / "v.txt").read_text() == "2"
    metrics = sandbox / "outside" / "metrics" / "eval.json"
    for version in (1, 2):
        atomic_write_json(metrics, {"v": version})
    assert (metrics.parent / MARKER).is_file() and '"v": 2' in metrics.read_text()
    empty = sandbox / "outside" / "empty"
    empty.mkdir()
    with atomic_dir(empty) as tmp:
        (tmp / "v.txt").write_text("1")
    with atomic_dir(empty) as tmp:  # marked when first published, so replaceable again
        (tmp / "v.txt").write_text("2")
    assert sorted(p.name for p in empty.iterdir()) == [MARKER, "v.txt"]
    inside = sandbox / "repo" / "reports" / "eval"
    with atomic_dir(inside) as tmp:
        (tmp / "a.txt").write_text("x")
    assert sorted(p.name for p in inside.iterdir()) == ["a.txt"]  # inside the repository: no marker


def test_checkpoints_in_an_empty_folder_outside_are_rewritten_run_after_run(tmp_path):
    """`latest` is rewritten at every checkpoint: the folder rl.checkpoint_dir names must become the pipeline's."""
    from components.model.factory import initial_policy
    from components.rl.checkpoint import latest_checkpoint, save_checkpoint, verify_manifest

    cfg = load_config(overrides=["model.tiny.hidden_size=32", "model.tiny.num_hidden_layers=1",
                                 "model.tiny.intermediate_size=64"])
    model, tok = initial_policy(cfg.model, seed=0)
    root = tmp_path / "ckpt"
    root.mkdir()  # chosen by the user, empty
    for iteration in (1, 2, 3):
        save_checkpoint(root, iteration, model, tok, {"iteration": iteration}, {}, keep=2)
    assert (root / MARKER).is_file() and latest_checkpoint(root).name == "iter-000003"
    verify_manifest(root / "iter-000003")
