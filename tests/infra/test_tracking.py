"""Connecting to the MLflow tracking store (faults during a run: tests/infra/test_tracking_faults.py), and
what a stage run records: a name that says what ran, the params its dvc.yaml stage lists, the whole config."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from components.config import REPO_ROOT, load_config
from components.infra.run_records import (CONFIG_ARTIFACT, CONFIG_HASH_TAG, EXP_ENV, config_hash, run_name,
                                          stage_params)
from components.infra.tracking import TrackingUnavailableError, ensure_experiment, stage_run
from tests.support.e2e import free_port
from tests.support.mlflow_store import database, store  # noqa: F401  (fixtures)


def test_an_unreachable_tracking_server_fails_fast():
    cfg = load_config(overrides=[f"tracking.tracking_uri=http://127.0.0.1:{free_port()}"])
    start = time.monotonic()
    with pytest.raises(TrackingUnavailableError, match="cannot be reached"):
        ensure_experiment(cfg)
    assert time.monotonic() - start < 10


# ---- what a stage run records: its name, its params, the config (components/infra/run_records.py) ----



def _recorded(stage: str, overrides=()):
    cfg = load_config(overrides=list(overrides))
    with stage_run(cfg, stage) as run:
        pass
    return cfg, MlflowClient().get_run(run.info.run_id)


def test_a_stage_run_is_named_by_stage_algorithm_pipo_and_dvc_experiment(store, monkeypatch):
    monkeypatch.setenv(EXP_ENV, "swank-rind")  # as `dvc exp run` sets it
    assert _recorded("rl")[1].info.run_name == "rl · grpo+pipo · swank-rind"
    assert _recorded("prepare")[1].info.run_name == "prepare · swank-rind"
    monkeypatch.delenv(EXP_ENV)
    cfg, run = _recorded("rl", ["rl.pipo.enabled=false", "rl.algorithm=dapo"])
    assert run.info.run_name == f"rl · dapo · cfg-{config_hash(cfg)}"
    assert run.data.tags[CONFIG_HASH_TAG] == config_hash(cfg)
    assert run_name(load_config(overrides=["sft.enabled=false"]), "sft", {EXP_ENV: "e"}) == "sft (skipped) · e"
    assert run_name(cfg, "pipeline", {EXP_ENV: "e"}) == "pipeline · dapo · e"  # the flow's parent run
    # two RL runs that differ in one setting cannot share a name
    assert run_name(cfg, "rl", {}) != run_name(load_config(overrides=["rl.pipo.enabled=false", "rl.algorithm=dapo",
                                                                      "rl.lr=0.5"]), "rl", {})


def test_a_stage_run_logs_the_params_its_dvc_stage_lists_and_the_whole_config(store):
    cfg, run = _recorded("rl")
    listed = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["rl"]["params"]
    params = run.data.params
    assert all(any(k == p or k.startswith(p + ".") for p in listed) for k in params), sorted(params)
    assert {"rl.lr", "rl.effective.epsilon", "rl.pipo.window", "rollout.engine", "reward.correct_weight",
            "model.lora.enabled", "seed"} <= set(params)
    assert not [k for k in params if k.startswith(("compare.", "eval.", "sft.", "verify."))]
    config = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=CONFIG_ARTIFACT,
                                                      dst_path=str(store / "dl")))
    assert yaml.safe_load(config.read_text()) == cfg.model_dump(mode="json")  # every section, compare.* too


def test_stage_params_are_read_from_the_stage_in_dvc_yaml(tmp_path):
    dvc = tmp_path / "dvc.yaml"
    dvc.write_text(yaml.safe_dump({"stages": {"x": {"cmd": "true", "params": [
        "seed", "rl.pipo", {"params.yaml": ["eval.num_samples"]}, {"other.yaml": ["seed"]}]}}}))
    cfg = load_config()
    keys = set(stage_params(cfg, "x", dvc))
    assert keys == {"seed", "eval.num_samples"} | {k for k in cfg.flat() if k.startswith("rl.pipo.")}
    assert stage_params(cfg, "not-a-dvc-stage", dvc) == cfg.flat()  # a run outside the pipeline's stages
