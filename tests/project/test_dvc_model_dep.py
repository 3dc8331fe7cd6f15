"""DVC sees the user's local model folder: model.name_or_path, when it names a local folder, must lie in
models/base/ (the config check refuses one elsewhere, on one line), and models/base is a dvc.yaml dep of
the stages that read the base model, so an edit to one of its files makes `dvc status` name exactly them.
git ignores the model files there (only the placeholder README is tracked), and DVC hashes them anyway."""

from __future__ import annotations

import json
import subprocess

import pytest

from components.config import REPO_ROOT, ConfigError, load_config
from tests.support.e2e import BIN, make_repo, run

# The stages that read the base model: prepare (its tokenizer), sft (builds on it), rl (models/sft is a
# pointer to it when sft.enabled is false), evaluate (models/init is a pointer to it). Not verify.
READERS = {"prepare", "sft", "rl", "evaluate"}


def model_folder(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"hidden_size": 64}')
    (path / "model.safetensors").write_bytes(b"\x00" * 64)
    return path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder (params.yaml, models/base/) as the working directory."""
    project = tmp_path / "project"
    (project / "models/base").mkdir(parents=True)
    (project / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    monkeypatch.chdir(project)
    return project


def load(project, name_or_path):
    return load_config(project / "params.yaml", [f"model.name_or_path={name_or_path}"])


def test_a_local_model_folder_outside_models_base_is_refused_on_one_line_naming_the_setting(project, tmp_path):
    outside = model_folder(tmp_path / "shared" / "qwen")
    for given in (str(outside), "models/base/../../../shared/qwen"):
        with pytest.raises(ConfigError) as err:
            load(project, given)
        message = str(err.value)
        assert "\n" not in message
        assert f"model.name_or_path ({given!r}) is a local folder outside models/base/" in message
        assert "move the folder into models/base/, or link its files there" in message
        assert "ln -s /abs/path/* models/base/NAME/" in message  # a model on a shared disk


def test_a_model_folder_in_models_base_or_linked_file_by_file_is_accepted(project, tmp_path):
    model_folder(project / "models/base/qwen")
    (project / "models/base/config.json").write_text("{}")  # the folder itself may be the model
    outside = model_folder(tmp_path / "shared" / "llama")
    linked = project / "models/base/llama"
    linked.mkdir()
    for file in outside.iterdir():
        (linked / file.name).symlink_to(file)
    for given in ("models/base", "models/base/qwen", str(project / "models/base/qwen"), "models/base/llama"):
        assert load(project, given).model.name_or_path == given


def test_a_linked_folder_inside_models_base_is_refused_dvc_would_not_follow_it(project, tmp_path):
    outside = model_folder(tmp_path / "shared" / "qwen")
    (project / "models/base/qwen").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError) as err:
        load(project, "models/base/qwen")
    message = str(err.value)
    assert "\n" not in message
    assert f"goes through {project / 'models/base/qwen'}, a link to a folder, which DVC does not follow" in message
    assert "replace the link by a folder" in message


@pytest.mark.parametrize("name", ["tiny", "Qwen/Qwen2.5-0.5B"])
def test_tiny_and_a_hub_id_are_not_local_folders_and_pass(project, name):
    assert load(project, name).model.name_or_path == name  # no hub call at load: a stage resolves it


def dvc_status(repo) -> dict:
    return json.loads(run([str(BIN / "dvc"), "status", "--json"], repo).stdout or "{}")


@pytest.mark.slow  # ~11 s: a git+DVC copy of the repository and four dvc calls
def test_editing_a_file_of_the_model_folder_makes_dvc_status_name_the_stages_that_read_it(tmp_path):
    repo = make_repo(tmp_path / "repo", store=False)
    dvc = str(BIN / "dvc")
    qwen = model_folder(repo / "models/base/qwen")
    shared = model_folder(tmp_path / "shared")  # a model file elsewhere, linked in
    (qwen / "tokenizer.json").symlink_to(shared / "config.json")
    # git ignores the model files (no accidental commit of weights); the placeholder stays tracked
    assert run(["git", "status", "--porcelain", "--", "models"], repo).stdout == ""
    assert run(["git", "ls-files", "models/base"], repo).stdout.split() == ["models/base/README.md"]
    # every stage recorded as run on these inputs, without running any: placeholder outputs, committed
    for out in ("models/init", "models/sft", "models/rl", "reports/rl", "reports/eval", "reports/verify"):
        (repo / out).mkdir(parents=True)
        (repo / out / "placeholder").write_text(out)
    (repo / "data/prepared").mkdir()
    for split in ("sft", "rl", "eval"):
        (repo / "data/prepared" / f"{split}.parquet").write_text(split)
    for metrics in ("metrics/eval.json", "metrics/verify.json"):
        (repo / metrics).parent.mkdir(exist_ok=True)
        (repo / metrics).write_text("{}")
    run([dvc, "commit", "--force"], repo)
    assert dvc_status(repo) == {}

    (qwen / "model.safetensors").write_bytes(b"\x01" * 64)  # a git-ignored file of the model folder
    status = dvc_status(repo)
    assert set(status) == READERS, status
    for stage in READERS:
        assert {"changed deps": {"models/base": "modified"}} in status[stage], status[stage]

    run([dvc, "commit", "--force"], repo)
    (shared / "config.json").write_text('{"hidden_size": 128}')  # the target of a linked file
    assert set(dvc_status(repo)) == READERS


def test_an_experiment_copies_the_untracked_files_of_models_base_not_the_folder_its_checkout_has(tmp_path):
    """`dvc exp run --temp --copy-paths` copies a folder with shutil.copytree, which fails over models/base/
    (its README is in the experiment's git checkout): the untracked entries inside are copied instead."""
    from flows import experiment

    root = tmp_path / "r"
    (root / "models/base").mkdir(parents=True)
    (root / ".gitignore").write_text((REPO_ROOT / ".gitignore").read_text())
    (root / "models/base/README.md").write_text("placeholder")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], [*git, "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    model_folder(root / "models/base/qwen")
    (root / "models/base/config.json").write_text("{}")
    cfg = load_config(overrides=["model.name_or_path=tiny"])
    for name, copied in (("models/base", ["models/base/config.json", "models/base/qwen"]),
                         ("models/base/qwen", ["models/base/qwen"])):
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"name_or_path": name})})
        assert sorted(experiment.untracked_inputs(cfg, root)) == copied
