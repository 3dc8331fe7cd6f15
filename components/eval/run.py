"""Evaluation of a policy on one benchmark: greedy pass@1 plus k samples for mean@k, pass@k
(unbiased estimator) and maj@k, with a per-problem table of every completion and verdict."""

from __future__ import annotations

import logging
import time

import pandas as pd
import torch

from components.config import Config, EvalConfig
from components.eval.metrics import summarise, summarise_by_source
from components.infra.progress import ProgressReporter
from components.reward.extract import extract_boxed
from components.reward.pool import ScoringPool
from components.rollout import RolloutEngine

log = logging.getLogger(__name__)


def _generate_all(engine: RolloutEngine, prompts: list[str], cfg: EvalConfig, greedy: bool,
                  generator: torch.Generator | None, progress: ProgressReporter, done: int,
                  per_problem: int) -> tuple[list[str], list[int]]:
    """Completions of `prompts` in eval.batch_size batches; `progress` counts completions from `done` on."""
    texts, lengths = [], []
    phase = "greedy" if greedy else f"{per_problem} samples each"
    for lo in range(0, len(prompts), cfg.batch_size):
        batch = engine.generate(prompts[lo : lo + cfg.batch_size], cfg.max_completion_length,
                                temperature=cfg.temperature, greedy=greedy, generator=generator)
        texts.extend(batch.texts)
        lengths.extend(int(n) for n in batch.completion_mask.sum(-1).tolist())
        progress.update(done + len(texts), {"phase": phase, "problems": f"{len(texts) // per_problem}/"
                                                                        f"{len(prompts) // per_problem}"})
    return texts, lengths


def _score(scorer: ScoringPool, sources: list[str], texts: list[str], answers: list[str]) -> list[bool]:
    """Correctness of each completion, through the caller's scoring pool (`pool_for(cfg.reward)`:
    reward.timeout_s per item, crash isolation); there is no other scoring path."""
    return [float(x) >= 1.0 for x in scorer.score(sources, texts, answers)]


def evaluate_policy(engine: RolloutEngine, data: pd.DataFrame, cfg: EvalConfig, seed: int,
                    label: str = "policy", *, scorer: ScoringPool,
                    rendered: list[str]) -> tuple[dict[str, float], pd.DataFrame]:
    """Return (summary metrics, per-problem table) of `engine`'s policy on `data`, scored by `scorer`.
    rendered: each row's prompt as the model reads it (components.model.chat.render_rows), which is
    what is generated from; the table keeps the row's own prompt."""
    prompts, answers, sources = (data[c].astype(str).tolist() for c in ("prompt", "answer", "source"))
    n, k = len(prompts), cfg.num_samples
    if len(rendered) != n:
        raise ValueError(f"{len(rendered)} rendered prompts for {n} rows")
    start = time.time()
    log.info("eval %s: %d problems x (1 greedy + %d samples) = %d completions", label, n, k, n * (1 + k))
    progress = ProgressReporter(f"eval {label}", n * (1 + k), unit="completion", logger=log)
    greedy_texts, greedy_lengths = _generate_all(engine, rendered, cfg, True, None, progress, 0, 1)
    greedy_ok = _score(scorer, sources, greedy_texts, answers)

    generator = torch.Generator().manual_seed(seed)
    sample_texts, sample_lengths = _generate_all(engine, [p for p in rendered for _ in range(k)], cfg, False,
                                                 generator, progress, n, k)
    sample_ok = _score(scorer, [s for s in sources for _ in range(k)], sample_texts,
                       [a for a in answers for _ in range(k)])

    def per_problem(values: list) -> list[list]:
        return [values[i * k : (i + 1) * k] for i in range(n)]

    table = pd.DataFrame({
        "id": data["id"].astype(str).tolist(),
        "data_source": sources,
        "prompt": prompts,
        "answer": answers,
        "greedy_completion": greedy_texts,
        "greedy_answer": [extract_boxed(t) for t in greedy_texts],
        "greedy_correct": greedy_ok,
        "greedy_length": greedy_lengths,
        "sample_completions": per_problem(sample_texts),
        "sample_answers": per_problem([extract_boxed(t) for t in sample_texts]),
        "sample_correct": per_problem(sample_ok),
        "sample_lengths": per_problem(sample_lengths),
    })
    summary = summarise(table, k)
    summary["greedy_mean_length"] = sum(greedy_lengths) / n
    log.info("eval %-9s pass@1 %.3f  mean@%d %.3f  pass@%d %.3f  maj@%d %.3f  (%d problems, %.1fs)", label,
             summary["pass@1"], k, summary[f"mean@{k}"], k, summary[f"pass@{k}"], k, summary[f"maj@{k}"], n,
             time.time() - start)
    return summary, table


def by_source(table: pd.DataFrame, k: int) -> dict[str, dict[str, float]]:
    """Per data source metrics of a per-problem table (benchmarks that mix sources)."""
    return summarise_by_source(table, k)


def evaluate_folder(folder: str, cfg: Config, benchmarks: dict[str, pd.DataFrame], label: str, scorer):
    """{benchmark: (summary, per-problem table)} of the policy in `folder`: the one evaluation that the
    evaluate stage, the verify stage (champion) and `make compare` all use."""
    from components.model.chat import render_rows
    from components.model.factory import load_policy
    from components.rollout import make_engine

    model, tokenizer = load_policy(folder, cfg.model.dtype, cfg.model.trust_remote_code)
    engine = make_engine(cfg.rollout, model, tokenizer, folder, None, cfg.seed,
                         trust_remote_code=cfg.model.trust_remote_code)
    out = {}
    for name, data in benchmarks.items():
        out[name] = evaluate_policy(engine, data, cfg.eval, cfg.seed, f"{label}/{name}", scorer=scorer,
                                    rendered=render_rows(tokenizer, data, cfg.data.chat_template))
    del engine, model
    return out


def load_benchmarks(cfg: Config) -> dict[str, pd.DataFrame]:
    from components.eval.benchmarks import load_benchmark

    return {b.name: load_benchmark(b, cfg.data.out_dir) for b in cfg.eval.benchmarks}
