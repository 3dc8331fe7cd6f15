"""models/sft records the content of a local base-model folder, and the rl stage's check refuses a
models/sft whose base folder's weights or tokenizer changed since (the guard behind DVC's, which reruns
sft when models/base changes: tests/project/test_dvc_model_dep.py)."""

from __future__ import annotations

import hashlib
import json

import pytest

from components.config import ConfigError, load_config
from components.model.lineage import check_built_from, write_lineage


@pytest.fixture
def base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a local model folder must lie in models/base/ (of the project or of cwd)
    folder = tmp_path / "models" / "base"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden_size": 64}')
    (folder / "model.safetensors").write_bytes(b"\x00" * 4096)
    (folder / "tokenizer.json").write_text('{"vocab": {"a": 0}}')
    (folder / "README.md").write_text("model card")
    return folder


def built_from(tmp_path, base):
    model = load_config(overrides=[f"model.name_or_path={base}"]).model
    sft = tmp_path / "sft"
    sft.mkdir()
    write_lineage(sft, model, sft_trained=True)
    return sft, model


def test_the_record_holds_each_model_file_size_and_sha256_but_not_the_card(tmp_path, base):
    sft, _ = built_from(tmp_path, base)
    content = json.loads((sft / "lineage.json").read_text())["base"]["content"]
    assert sorted(content) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert content["model.safetensors"] == {"bytes": 4096, "sha256": hashlib.sha256(b"\x00" * 4096).hexdigest()}


@pytest.mark.parametrize("changed", ["model.safetensors", "tokenizer.json"])
def test_rl_check_refuses_a_base_folder_whose_files_changed_since_sft(tmp_path, base, changed):
    sft, model = built_from(tmp_path, base)
    (base / changed).write_bytes((base / changed).read_bytes()[:-1] + b"\x01")  # same size, other bytes
    with pytest.raises(ConfigError) as err:
        check_built_from(sft, model)
    message = str(err.value)
    assert "\n" not in message
    assert f"{sft} was built from base model folder {base.resolve()}, whose files have changed since ({changed})" \
        in message
    assert "rerun the sft stage (`dvc repro -f sft`)" in message


def test_rl_check_refuses_an_added_weight_file_and_accepts_an_edited_model_card(tmp_path, base):
    sft, model = built_from(tmp_path, base)
    (base / "README.md").write_text("an edited model card")
    assert check_built_from(sft, model)["base"]["resolved"] == str(base.resolve())
    (base / "model-00002-of-00002.safetensors").write_bytes(b"\x01")
    with pytest.raises(ConfigError, match=r"changed since \(model-00002-of-00002\.safetensors\)"):
        check_built_from(sft, model)


def test_rl_check_refuses_a_record_written_before_content_fingerprints(tmp_path, base):
    sft, model = built_from(tmp_path, base)
    record = json.loads((sft / "lineage.json").read_text())
    del record["base"]["content"]
    (sft / "lineage.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"the record predates content fingerprints\); .*dvc repro -f sft"):
        check_built_from(sft, model)
