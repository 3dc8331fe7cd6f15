"""Shared scaffolding for tests that run the real RL trainer on a tiny policy."""

from __future__ import annotations

import copy
import random

import pandas as pd
import torch
from accelerate import Accelerator

from components.config import load_config
from components.rl.batch import TrainingBatch
from components.rl.trainer import train_rl

TINY = ["model.tiny.hidden_size=32", "model.tiny.num_hidden_layers=1", "model.tiny.intermediate_size=64",
        "rl.prompts_per_iteration=8", "rl.num_generations=4", "rl.max_completion_length=12", "rl.log_every=100",
        "rl.pipo.window=2", "rl.guard.enabled=false"]  # the guard's tests turn it on


def sums(n: int, seed: int) -> pd.DataFrame:
    """n one-digit addition prompts in the prepared-split layout."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        rows.append({"id": f"r{i}", "source": "reasoning_gym/chain_sum", "prompt": f"{a}+{b}=", "answer": str(a + b)})
    return pd.DataFrame(rows)


def parity_reward(batch, sources, answers, *_):
    """A verifiable stand-in reward that an untrained policy already earns about half the time, so every
    iteration really updates the weights: these tests pin down mechanics, not whether arithmetic is learned."""
    return torch.tensor([float(len(t) % 2 == 0) for t in batch.texts])


def run_trainer(policy, overrides: list[str], iterations: int, checkpoint_dir=None, resume=False,
                log_metrics=lambda m, s: None):
    """train_rl on a copy of `policy` with TINY + overrides from params.yaml; returns (model, result)."""
    cfg = load_config(overrides=TINY + overrides + [f"rl.iterations={iterations}"])
    model, tok = policy
    return train_rl(copy.deepcopy(model), tok, sums(200, 1), cfg.rl, 0, Accelerator(cpu=True),
                    rollout=cfg.rollout, reward=cfg.reward, model_cfg=cfg.model, checkpoint_dir=checkpoint_dir, resume=resume,
                    log_metrics=log_metrics)


def scored_on_one_thread(monkeypatch, reward):
    """Fixture body: the trainer scores with `reward`, on one torch thread (bit-reproducible)."""
    from components.rl import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "score_batch", reward)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def parity_rewards_on_one_thread(monkeypatch):
    """Fixture body: the trainer scores with `parity_reward`, on one torch thread."""
    yield from scored_on_one_thread(monkeypatch, parity_reward)


def training_batch(vocab: int, seed: int = 0) -> TrainingBatch:
    """12 rows with very different prompt and completion lengths (so micro-batches hold different token
    counts) and one row with no counted token (GSPO's sequence mean must skip it)."""
    g = torch.Generator().manual_seed(seed)
    n, lp, lc = 12, 7, 11
    p_len = torch.randint(2, lp + 1, (n,), generator=g)
    c_len = torch.randint(1, lc + 1, (n,), generator=g)
    c_len[0], c_len[1] = lc, 1
    prompt_mask = (torch.arange(lp)[None] >= lp - p_len[:, None]).long()
    completion_mask = (torch.arange(lc)[None] < c_len[:, None]).long()
    loss_mask = completion_mask.float()
    loss_mask[3] = 0.0  # e.g. a truncated completion under rl.mask_truncated_completions
    old = -torch.rand(n, lc, generator=g) * 3 * completion_mask
    return TrainingBatch(prompt_ids=torch.randint(4, vocab, (n, lp), generator=g) * prompt_mask,
                         prompt_mask=prompt_mask, completion_ids=torch.randint(4, vocab, (n, lc), generator=g),
                         completion_mask=completion_mask, loss_mask=loss_mask, old_logprobs=old,
                         advantages=torch.randn(n, generator=g), ref_logprobs=old - 0.1 * completion_mask,
                         is_weights=1 + torch.rand(n, lc, generator=g) * completion_mask)
