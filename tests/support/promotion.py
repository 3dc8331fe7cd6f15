"""The promotion gate's workspace on a real (temporary) MLflow store: tiny SFT and RL policies, the eval
split, and per-problem eval results written as the evaluate stage writes them. Import `workspace` (a
fixture) into a test module."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from components.config import REPO_ROOT, load_config
from components.infra.provenance import eval_manifest, write_eval_manifest
from components.model.factory import initial_policy
from tests.support.mlflow_store import empty_store

TINY = ["model.tiny.hidden_size=32", "model.tiny.num_hidden_layers=1", "model.tiny.intermediate_size=64"]


def eval_table(correct: list[bool], k: int = 2) -> pd.DataFrame:
    n = len(correct)
    return pd.DataFrame({"id": [f"p{i}" for i in range(n)], "greedy_correct": correct,
                         "sample_correct": [[c] * k for c in correct]})


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    """A working directory with tiny SFT and RL policy folders, the eval split, and an MLflow store of its own."""
    monkeypatch.chdir(tmp_path)
    # a params.yaml makes tmp_path a project folder, whose outputs the pipeline may replace
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", empty_store(tmp_path / 'mlflow.db'))
    monkeypatch.delenv("PIPO_PARENT_RUN_ID", raising=False)
    cfg = load_config(overrides=TINY + ["verify.num_resamples=2000"])
    for seed, out_dir in ((0, cfg.rl.out_dir), (1, cfg.sft.out_dir)):
        model, tok = initial_policy(cfg.model, seed=seed)
        model.save_pretrained(tmp_path / out_dir)
        tok.save_pretrained(tmp_path / out_dir)
    (tmp_path / cfg.data.out_dir).mkdir(parents=True)
    pd.DataFrame({"id": ["e0"], "prompt": ["1+1="], "answer": ["2"]}).to_parquet(
        tmp_path / cfg.data.out_dir / "eval.parquet")
    return tmp_path, cfg


def write_eval(root, label: str, correct: list[bool]) -> None:
    """Per-problem results of one model, and (as the evaluate stage does) the hashes of what was scored."""
    (root / "reports" / "eval" / label).mkdir(parents=True, exist_ok=True)
    eval_table(correct).to_parquet(root / "reports" / "eval" / label / "chain_sum.parquet")
    cfg = load_config(overrides=TINY)
    write_eval_manifest(root / "reports" / "eval", eval_manifest(
        {"sft": cfg.sft.out_dir, "rl": cfg.rl.out_dir}, cfg.eval.benchmarks, cfg.data.out_dir))
