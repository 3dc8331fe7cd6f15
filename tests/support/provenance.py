"""One tiny pipeline state evaluated by the real evaluate stage (prepare, sft and rl outputs: tiny models of
different seeds), and a private copy of it per test with its own sqlite MLflow store. Import `evaluated`
and `pipeline` (fixtures) into a test module."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from components.config import load_config
from components.model.factory import initial_policy
from components.model.io import save_policy
from components.stages.common import INIT_DIR
from components.stages.evaluate import run as run_evaluate
from tests.support.mlflow_store import empty_store

NAME = "pipo-policy"
OVERRIDES = [
    "model.tiny.hidden_size=32", "model.tiny.num_hidden_layers=1", "model.tiny.intermediate_size=64",
    "eval.num_samples=1", "eval.max_completion_length=6", "eval.batch_size=64",
    "reward.workers=0", "verify.num_resamples=200",
    # Any RL model passes this gate (the lower bound of a gain is never below -1): the only thing
    # that can keep a model from @champion here is the provenance check.
    "verify.min_gain=-1.0",
]


def save_model(cfg, seed: int, out_dir) -> None:
    model, tok = initial_policy(cfg.model, seed=seed)
    save_policy(model, tok, Path(out_dir))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """prepare + sft + rl outputs (tiny models of different seeds), evaluated by the real evaluate stage."""
    root = tmp_path_factory.mktemp("evaluated")
    with pytest.MonkeyPatch.context() as m:
        m.chdir(root)
        m.setenv("MLFLOW_TRACKING_URI", empty_store(root / "mlflow.db"))
        m.delenv("PIPO_PARENT_RUN_ID", raising=False)
        cfg = load_config(overrides=OVERRIDES)
        prepared = root / cfg.data.out_dir
        prepared.mkdir(parents=True)
        pd.DataFrame({"id": [f"e{i}" for i in range(12)], "source": "reasoning_gym/chain_sum",
                      "prompt": [f"{i}+{i + 3}=" for i in range(12)], "answer": [str(2 * i + 3) for i in range(12)],
                      }).to_parquet(prepared / "eval.parquet")
        save_model(cfg, 0, INIT_DIR)
        save_model(cfg, 1, cfg.sft.out_dir)
        save_model(cfg, 2, cfg.rl.out_dir)
        run_evaluate(cfg)
    return root, cfg


@pytest.fixture()
def pipeline(evaluated, tmp_path, monkeypatch):
    """A private copy of the evaluated state (data, models, reports/eval) with an empty MLflow store."""
    base, cfg = evaluated
    for rel in ("data", "models", "reports"):
        shutil.copytree(base / rel, tmp_path / rel)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", empty_store(tmp_path / "mlflow.db"))
    monkeypatch.delenv("PIPO_PARENT_RUN_ID", raising=False)
    return tmp_path, cfg
