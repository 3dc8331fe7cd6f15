"""Peak memory of an RL iteration against the optimizer mini-batch size, and of the log-prob function.

The model is a 12 M-parameter Qwen2-architecture causal LM with a 32 k vocabulary, built here with
random weights (components/model/local_qwen2.py, shape "bench12m"). Each measurement runs in its own
process on one thread, so its peak RSS (ru_maxrss) is its own:

  iteration, mini-batch M in {64, 256}: 32 prompts x 8 samples = 256 sequences, completions forced to
      256 tokens (no stop token), at the default micro-batch budget (params.yaml); two iterations, so
      the second one runs all three parts: rollout, PIPO's PI step on the cached batch, base update.
  logprobs, before / after: forward + backward of the plain full-vocabulary formula
      (reference_completion_logprobs) and of completion_logprobs, on 32 sequences of 32 + 256 tokens.

Targets (issue 12): peak at mini-batch 256 within 10 % of mini-batch 64; the iteration under 2.5 GB;
the new log-prob function under a third of the old one's peak.

  python benchmarks/memory_scaling.py [--json FILE] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MINI_BATCHES = (64, 256)
PROMPTS, SAMPLES, COMPLETION, LOGPROB_SEQS, PROMPT_TOKENS = 32, 8, 256, 32, 32


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def iteration_child(model_dir: Path, mini_batch: int, overrides: list[str]) -> dict:
    import pandas as pd
    import torch
    from accelerate import Accelerator

    from components.config import load_config
    from components.model.chat import rendered_frame
    from components.model.factory import load_policy
    from components.rl import trainer as trainer_module
    from components.rl.trainer import RLTrainer
    from components.rollout.hf_engine import HFRolloutEngine

    cfg = load_config(overrides=[
        f"model.name_or_path={model_dir}", f"rl.prompts_per_iteration={PROMPTS}", f"rl.num_generations={SAMPLES}",
        f"rl.max_completion_length={COMPLETION}", f"rl.mini_batch_size={mini_batch}", "rl.pipo.enabled=true",
        "rl.pipo.window=2", "rl.pipo.min_history=1", "rl.iterations=2", "reward.workers=0",
        "rl.pipo.joint=false", "rl.guard.enabled=false"] + overrides)  # the PI step measured on its own
    model, tok = load_policy(model_dir)
    rows = [{"id": str(i), "source": "reasoning_gym/chain_sum", "answer": str(i),
             "prompt": f"What is {10 + i} + {40 + 3 * i}? Show the columns, then the answer in \\boxed{{}}.",
             "messages": None} for i in range(PROMPTS)]
    prompts = rendered_frame(tok, pd.DataFrame(rows), "auto")

    # A reward that varies within every group (random weights almost never give a correct answer),
    # so advantages are non-zero and both updates really run.
    def alternating_reward(batch, *_):
        return torch.tensor([float(i % 2) for i in range(len(batch.texts))])

    trainer_module.score_batch = alternating_reward
    trainer = RLTrainer(model, tok, prompts, cfg.rl, 0, Accelerator(cpu=True), rollout=cfg.rollout,
                        reward=cfg.reward, model_cfg=cfg.model)
    trainer.engine = HFRolloutEngine(trainer.acc.unwrap_model(trainer.model), tok, [])  # full-length completions
    seconds, metrics = [], {}
    try:
        for it in range(cfg.rl.iterations):
            t0 = time.perf_counter()
            metrics = trainer.iteration(it)
            seconds.append(time.perf_counter() - t0)
    finally:
        trainer.close()
    return {"peak_rss_gb": peak_rss_gb(), "seconds_per_iteration": seconds,
            "prompt_tokens": prompts_tokens(tok, prompts),
            "completion_mean_length": metrics["completions/mean_length"], "pi_step": metrics.get("pipo/active"),
            "micro_batch_tokens": cfg.rl.max_tokens_per_micro_batch,
            "lm_head_chunk_tokens": cfg.model.lm_head_chunk_tokens}


def prompts_tokens(tok, prompts) -> float:
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts["prompt"]]
    return sum(lengths) / len(lengths)


def logprobs_child(model_dir: Path, impl: str) -> dict:
    import torch

    from components.config import load_config
    from components.model.factory import load_policy
    from components.rl.logprobs import completion_logprobs, reference_completion_logprobs

    model, _ = load_policy(model_dir)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    p_ids = torch.randint(0, vocab, (LOGPROB_SEQS, PROMPT_TOKENS), generator=g)
    c_ids = torch.randint(0, vocab, (LOGPROB_SEQS, COMPLETION), generator=g)
    p_mask, c_mask = torch.ones_like(p_ids), torch.ones_like(c_ids)
    chunk = load_config().model.lm_head_chunk_tokens  # the default, as training uses it
    t0 = time.perf_counter()
    if impl == "before":
        lp, _ = reference_completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, 1.0)
    else:
        lp, _ = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask, 1.0, chunk_tokens=chunk)
    (lp * c_mask).sum().backward()
    return {"peak_rss_gb": peak_rss_gb(), "seconds": time.perf_counter() - t0}


def run_child(args: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PIPO_TORCH_THREADS="1")
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="params override, e.g. "
                        "rl.max_tokens_per_micro_batch=8192 (iteration runs)")
    parser.add_argument("--child", choices=["iteration", "logprobs"], help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mini-batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=["before", "after"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        from components.infra.runtime import limit_heap_growth

        limit_heap_growth()  # as every stage does (components/cli.py)
        torch.set_num_threads(1)
        result = (iteration_child(args.model, args.mini_batch, args.overrides) if args.child == "iteration"
                  else logprobs_child(args.model, args.impl))
        print(json.dumps(result))
        return

    from components.model.local_qwen2 import build_local_qwen2

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = build_local_qwen2(Path(scratch) / "bench12m", "bench12m")
        sets = [x for o in args.overrides for x in ("--set", o)]
        logprobs = {impl: run_child(["--child", "logprobs", "--model", str(model_dir), "--impl", impl])
                    for impl in ("before", "after")}
        iterations = {m: run_child(["--child", "iteration", "--model", str(model_dir), "--mini-batch", str(m), *sets])
                      for m in MINI_BATCHES}
    peaks = {str(m): round(r["peak_rss_gb"], 3) for m, r in iterations.items()}
    small, large = (iterations[m]["peak_rss_gb"] for m in MINI_BATCHES)
    before, after = logprobs["before"]["peak_rss_gb"], logprobs["after"]["peak_rss_gb"]
    result = {
        "model": "Qwen2 architecture, 12 M parameters (hidden 256, 4 layers, vocab 32,000), random weights",
        "sequences": PROMPTS * SAMPLES, "completion_tokens": COMPLETION, "threads": 1, "overrides": args.overrides,
        "peak_rss_gb": peaks,
        "seconds_per_iteration": {str(m): [round(s, 1) for s in r["seconds_per_iteration"]]
                                  for m, r in iterations.items()},
        "iteration_details": {str(m): {k: v for k, v in r.items() if k not in ("peak_rss_gb", "seconds_per_iteration")}
                              for m, r in iterations.items()},
        "logprobs_peak_rss_gb_before": round(before, 3), "logprobs_peak_rss_gb_after": round(after, 3),
        "logprobs_seconds": {k: round(v["seconds"], 2) for k, v in logprobs.items()},
        "targets": {"mini_batch_256_within_10pct_of_64": large <= 1.10 * small, "iteration_under_2.5_gb": large < 2.5,
                    "logprobs_under_a_third": after < before / 3},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
