"""RL without SFT (sft.enabled=false) and the base-model lineage the rl stage checks.

Answer-only data passes prepare with SFT off; the sft stage then writes the base model itself as
models/sft (no training) with a lineage record; RL starts from it; evaluate scores it once (as
"untrained") and verify compares RL with that start model. The rl stage refuses a models/sft built
from another base model than model.name_or_path, naming both.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from components.config import ConfigError, load_config
from tests.support.e2e import TINY_OVERRIDES, make_repo, mlflow_runs, registered_versions

ANSWER_ONLY = ["data.source=verl", "data.files=[data/answer_only.parquet]", "data.num_eval=16", "data.num_rl=60",
               "reward.workers=0", "verify.num_resamples=200", "verify.against_champion=false"]


def answer_only_sums(n: int) -> pd.DataFrame:
    """verl layout with a bare answer as ground truth: no worked solution anywhere."""
    rows = [(a, b) for a in range(10, 40) for b in range(10, 40)][:n]
    return pd.DataFrame([{"data_source": "reasoning_gym/chain_sum",
                          "prompt": [{"role": "user", "content": f"{a}+{b}="}],
                          "reward_model": {"style": "rule", "ground_truth": str(a + b)}} for a, b in rows])


@pytest.fixture
def repo(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo")
    answer_only_sums(120).to_parquet(repo / "data" / "answer_only.parquet")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    return repo


def tiny_cfg(repo, *extra: str):
    """The small pipeline on answer-only data; a later override replaces an earlier one of the same key."""
    merged = {o.split("=", 1)[0]: o for o in TINY_OVERRIDES + ANSWER_ONLY + list(extra)}
    return load_config(repo / "params.yaml", list(merged.values()))


def test_answer_only_data_with_sft_on_fails_prepare_naming_sft_enabled(repo):
    from components.data.ingest import IngestError
    from components.stages import stage_function

    with pytest.raises(IngestError) as err:
        stage_function("prepare")(tiny_cfg(repo, "sft.enabled=true"))
    message = str(err.value)
    assert "\n" not in message
    assert "no rows with a worked solution" in message and "set sft.enabled: false" in message
    assert not (repo / "data" / "prepared").exists()


def test_sft_disabled_leaves_the_sft_split_empty_even_when_rows_have_worked_solutions(tmp_path):
    from components.data.prepare import prepare

    cfg = load_config(overrides=["sft.enabled=false", "data.num_sft=20", "data.num_rl=50", "data.num_eval=10",
                                 f"data.out_dir={tmp_path / 'prepared'}"])
    summary = prepare(cfg, lambda prompt, messages=None: len(prompt), 100, tmp_path / "reports")
    assert summary["sft"]["rows"] == 0 and summary["rl"]["rows"] == 50  # reasoning-gym rows all carry one
    assert len(pd.read_parquet(tmp_path / "prepared" / "sft.parquet")) == 0


def test_pipeline_without_sft_trains_rl_from_the_base_model_and_verifies_against_it(repo):
    from components.infra.provenance import hash_path
    from components.model.factory import load_policy
    from components.stages import STAGE_NAMES, stage_function

    # An untrained model earns no reward, so every advantage would be 0 and RL would not move: noisy
    # verdicts give it a gradient, to show that RL trained the start model.
    cfg = tiny_cfg(repo, "sft.enabled=false", "rl.verifier_noise.flip_share=0.5")
    for stage in STAGE_NAMES:
        stage_function(stage)(cfg)

    # prepare: answer-only rows pass; the unused SFT split is written empty
    assert len(pd.read_parquet("data/prepared/sft.parquet")) == 0 and len(pd.read_parquet("data/prepared/rl.parquet"))
    # sft: no training; models/sft is the untrained model, recorded as such
    init, _ = load_policy("models/init")
    start, _ = load_policy("models/sft")
    assert all(torch.equal(a, b) for a, b in zip(init.state_dict().values(), start.state_dict().values()))
    lineage = json.loads((repo / "models/sft/lineage.json").read_text())
    assert lineage["sft_trained"] is False and lineage["base"]["name_or_path"] == "tiny"
    # rl: started from it, says so, and changed the weights
    rl_lineage = json.loads((repo / "models/rl/lineage.json").read_text())
    assert rl_lineage["sft_trained"] is False and rl_lineage["started_from"] == "models/sft"
    trained, _ = load_policy("models/rl")
    assert any(not torch.equal(a, b) for a, b in zip(init.state_dict().values(), trained.state_dict().values()))
    runs = {r.data.tags.get("pipo.stage"): r for r in mlflow_runs(repo)}
    assert runs["sft"].data.tags["sft.status"] == "skipped (sft.enabled=false)"
    assert runs["rl"].data.tags["rl.start_model"] == "base model (sft.enabled=false)"
    # evaluate scores the start model once; verify compares RL with it
    assert set(json.loads((repo / "metrics/eval.json").read_text())) == {"untrained", "rl"}
    verdict = json.loads((repo / "metrics/verify.json").read_text())
    assert "rl_vs_start_model" in verdict and "rl_vs_sft" not in verdict
    assert "rl vs start model" in (repo / "reports/verify/report.md").read_text()
    tags = registered_versions(repo)[0].tags
    assert tags["start_model"] == "base model (sft.enabled=false)"
    assert tags["start_model_hash"] == hash_path("models/init") and "sft_model_hash" not in tags
    assert tags["verdict_reason"].startswith("rl vs start model:")


def test_sft_disabled_with_an_hf_model_writes_pointers_and_rl_starts_from_the_base_folder(repo, tmp_path,
                                                                                          monkeypatch):
    from components.model.local_qwen2 import build_local_qwen2
    from components.stages import stage_function
    from components.stages.common import model_folder

    qwen = build_local_qwen2(repo / "models" / "base" / "qwen2-test", "test")
    cfg = load_config(repo / "params.yaml", ANSWER_ONLY + [
        "sft.enabled=false", f"model.name_or_path={qwen}", "data.chat_template=auto", "rl.iterations=1",
        "rl.prompts_per_iteration=2", "rl.num_generations=2", "rl.max_completion_length=8"])
    stage_function("prepare")(cfg)
    stage_function("sft")(cfg)
    for folder in ("models/init", "models/sft"):
        assert json.loads((repo / folder / "source.json").read_text()) == {"name_or_path": str(qwen)}
    assert not list((repo / "models/sft").glob("*.safetensors"))  # a pointer, not a copy
    assert model_folder("sft", cfg) == str(qwen)

    loaded = []
    import components.model.factory as factory

    real = factory.load_policy
    monkeypatch.setattr(factory, "load_policy", lambda path, *a, **k: loaded.append(str(path)) or real(path, *a, **k))
    stage_function("rl")(cfg)
    assert loaded[0] == str(qwen)
    assert json.loads((repo / "models/rl/lineage.json").read_text())["base"]["resolved"] == str(qwen.resolve())


@pytest.mark.parametrize("sft_enabled", ["false", "true"])
def test_rl_refuses_a_models_sft_built_from_another_base_naming_both(repo, sft_enabled):
    from components.model.lineage import write_lineage
    from components.stages import stage_function

    built = tiny_cfg(repo, f"sft.enabled={sft_enabled}")
    (repo / "models" / "sft").mkdir(parents=True)
    write_lineage(repo / "models" / "sft", built.model, sft_trained=sft_enabled == "true")
    other = repo / "models" / "base" / "other-base"
    other.mkdir()
    (other / "config.json").write_text("{}")
    cfg = tiny_cfg(repo, f"sft.enabled={sft_enabled}", f"model.name_or_path={other}")
    with pytest.raises(ConfigError) as err:
        stage_function("rl")(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert f"models/sft was built from base model 'tiny', but model.name_or_path is '{other}'" in message
    assert not (repo / "models" / "rl").exists()


def test_rl_refuses_the_same_folder_name_holding_another_model(repo):
    from components.model.lineage import write_lineage
    from components.stages import stage_function

    base = repo / "models" / "base" / "qwen"
    base.mkdir()
    (base / "config.json").write_text('{"hidden_size": 64}')
    cfg = tiny_cfg(repo, "sft.enabled=false", f"model.name_or_path={base}")
    (repo / "models" / "sft").mkdir(parents=True)
    write_lineage(repo / "models" / "sft", cfg.model, sft_trained=False)
    (base / "config.json").write_text('{"hidden_size": 128}')  # another model put in its place
    with pytest.raises(ConfigError, match=r"built from base model .* with config_sha256 \w+, but model\.name_or_path"):
        stage_function("rl")(cfg)


def test_rl_refuses_a_models_sft_without_a_lineage_record(repo):
    from components.stages import stage_function

    (repo / "models" / "sft").mkdir(parents=True)
    with pytest.raises(ConfigError, match="models/sft does not record the base model it was built from"):
        stage_function("rl")(tiny_cfg(repo))
