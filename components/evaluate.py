"""Evaluation of a policy on held-out prompts: greedy pass@1 and sampled mean@k."""

from __future__ import annotations

import logging
import time

import pandas as pd
import torch

from components.config import EvalConfig
from components.rewards import compute_score
from components.rollout import HFRolloutEngine

log = logging.getLogger(__name__)


def _generate_all(engine: HFRolloutEngine, prompts: list[str], cfg: EvalConfig, greedy: bool,
                  generator: torch.Generator | None) -> tuple[list[str], list[int]]:
    texts, lengths = [], []
    for lo in range(0, len(prompts), cfg.batch_size):
        batch = engine.generate(prompts[lo : lo + cfg.batch_size], cfg.max_completion_length,
                                temperature=cfg.temperature, greedy=greedy, generator=generator)
        texts.extend(batch.texts)
        lengths.extend(batch.completion_mask.sum(-1).tolist())
    return texts, lengths


def evaluate_policy(model, tokenizer, data: pd.DataFrame, cfg: EvalConfig, seed: int, label: str = "policy"):
    """Return (summary metrics, per-problem table).

    pass@1 is greedy decoding; mean@k is accuracy averaged over k samples at cfg.temperature.
    """
    engine = HFRolloutEngine(model, tokenizer)
    prompts, answers, sources = (data[c].tolist() for c in ("prompt", "answer", "source"))
    start = time.time()
    greedy_texts, greedy_lengths = _generate_all(engine, prompts, cfg, greedy=True, generator=None)
    greedy_ok = [compute_score(s, t, a) for s, t, a in zip(sources, greedy_texts, answers)]

    k = cfg.num_samples
    generator = torch.Generator().manual_seed(seed)
    sample_texts, _ = _generate_all(engine, [p for p in prompts for _ in range(k)], cfg, greedy=False,
                                    generator=generator)
    sample_ok = [compute_score(sources[i // k], t, answers[i // k]) for i, t in enumerate(sample_texts)]

    n = len(prompts)
    table = pd.DataFrame({
        "id": data["id"].tolist(),
        "prompt": prompts,
        "answer": answers,
        "greedy_completion": greedy_texts,
        "greedy_correct": greedy_ok,
        "sample_completions": [sample_texts[i * k : (i + 1) * k] for i in range(n)],
        "sample_correct": [sample_ok[i * k : (i + 1) * k] for i in range(n)],
    })
    summary = {
        "pass@1": sum(greedy_ok) / n,
        f"mean@{k}": sum(sample_ok) / len(sample_ok),
        "mean_length": sum(greedy_lengths) / n,
        "num_problems": n,
    }
    log.info("eval %-9s pass@1 %.3f  mean@%d %.3f  (%d problems, %.1fs)", label, summary["pass@1"], k,
             summary[f"mean@{k}"], n, time.time() - start)
    return summary, table
