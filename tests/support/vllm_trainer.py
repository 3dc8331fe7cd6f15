"""An RL trainer whose vllm engine starts from a fresh tiny policy, for the vLLM suite (tests/vllm, run in
the vLLM environment by `make test-vllm`): its overrides, its prompts, and a reward an untrained policy
earns half the time."""

from __future__ import annotations

import copy
import random

import pandas as pd
import torch
from accelerate import Accelerator

from components.config import load_config
from components.model.factory import initial_policy
from components.rl.trainer import RLTrainer

OVERRIDES = ["rl.prompts_per_iteration=8", "rl.num_generations=4", "rl.max_completion_length=16",
             "rl.pipo.window=2", "rl.iterations=4", "rl.log_every=100", "rollout.engine=vllm",
             "rollout.importance_sampling.enabled=true", "reward.workers=0",
             "rollout.vllm.dtype=float32", "rl.guard.enabled=false"]  # no checkpoint folder: the engine is tested


def sums(n: int) -> pd.DataFrame:
    rng = random.Random(0)
    pairs = [(rng.randint(0, 9), rng.randint(0, 9)) for _ in range(n)]
    return pd.DataFrame({"id": [f"r{i}" for i in range(n)], "source": "reasoning_gym/chain_sum",
                         "prompt": [f"{a}+{b}=" for a, b in pairs], "answer": [str(a + b) for a, b in pairs]})


def parity_reward(batch, sources, answers, *_):
    # Reward an untrained policy earns half the time, so updates really move the weights.
    return torch.tensor([float(len(t) % 2 == 0) for t in batch.texts])


def vllm_trainer(folder, overrides: list[str], seed: int) -> RLTrainer:
    """An RL trainer whose vllm engine starts from a fresh tiny policy saved in `folder`."""
    cfg = load_config(overrides=OVERRIDES + overrides)
    model, tok = initial_policy(cfg.model, seed=seed)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return RLTrainer(copy.deepcopy(model), tok, sums(64), cfg.rl, 0, Accelerator(cpu=True), rollout=cfg.rollout,
                     reward=cfg.reward, model_cfg=cfg.model, model_path=folder)
