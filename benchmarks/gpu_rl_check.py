"""GPU check of the real path: RL iterations of a Qwen2.5-0.5B-shape model at the GPU preset's shape.

No weights can be downloaded on these machines, so the model is built here with random weights from a
hand-written config of Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads, 2 KV heads, intermediate
4,864, vocab 151,936, tied; components/model/local_qwen2.py): every kernel, shape and memory figure is
the real model's, only the weights differ. Settings are presets/gpu.yaml (bf16 autocast over fp32
master weights, gradient checkpointing, token-budget micro-batches, colocated vLLM) with completions
capped at --max-completion tokens. A random model almost never stops, so completions run to the cap:
the worst case for memory. The reward alternates within each group (a random model is never right), so
every update and PIPO's PI step really run.

Prints (and writes with --json) per iteration: rollout tokens/s, seconds, and the peak GPU memory.

  python benchmarks/gpu_rl_check.py [--iterations 5] [--max-completion 1024] [--json FILE]
  # CPU smoke test of the same code:
  python benchmarks/gpu_rl_check.py --shape test --engine hf --iterations 2 --max-completion 16 --prompts 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="qwen2.5-0.5b")
    parser.add_argument("--engine", default="vllm", choices=["vllm", "hf"])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--max-completion", type=int, default=1024)
    parser.add_argument("--prompts", type=int, default=None, help="prompts per iteration (default: the preset's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import pandas as pd
    import torch

    from components.config import load_config
    from components.infra.runtime import limit_heap_growth
    from components.model.chat import rendered_frame
    from components.model.factory import load_policy, training_memory
    from components.model.local_qwen2 import build_local_qwen2
    from components.rl import trainer as trainer_module
    from components.rl.trainer import RLTrainer
    from components.stages.common import accelerator

    limit_heap_growth()  # as every stage does (components/cli.py)
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as scratch:
        folder = build_local_qwen2(Path(scratch) / args.shape, args.shape)
        overrides = [f"model.name_or_path={folder}", f"rl.max_completion_length={args.max_completion}",
                     f"rl.iterations={args.iterations}", f"rollout.engine={args.engine}", "reward.workers=0",
                     "rl.pipo.window=2", "rl.pipo.min_history=1",  # the PI step runs from the 2nd iteration
                     "rl.guard.enabled=false"]  # iterations are timed here, not whole runs (no checkpoint folder)
        if args.prompts:
            overrides.append(f"rl.prompts_per_iteration={args.prompts}")
        if not cuda:  # autocast bf16 on CPU is slow and fp32 weights are what a CPU run has
            overrides.append("model.mixed_precision=no")
        cfg = load_config(overrides=overrides + args.overrides, presets=[ROOT / "presets" / "gpu.yaml"])
        n = cfg.rl.prompts_per_iteration * args.iterations
        rows = pd.DataFrame([{"id": str(i), "source": "reasoning_gym/chain_sum", "answer": "0", "prompt": p,
                              "messages": json.dumps([{"role": "system", "content": "Put the answer in \\boxed{}."},
                                                      {"role": "user", "content": p}])}
                             for i, p in enumerate(f"What is {13 * i % 97} + {7 * i % 89}?" for i in range(n))])
        acc = accelerator(cfg)
        model, tok = load_policy(folder, cfg.model.dtype)
        model = training_memory(model.to(acc.device), cfg.model)
        trainer_module.score_batch = lambda batch, *_: torch.tensor([float(i % 2) for i in range(len(batch.texts))])
        trainer = RLTrainer(model, tok, rendered_frame(tok, rows, cfg.data.chat_template), cfg.rl, cfg.seed, acc,
                            rollout=cfg.rollout, reward=cfg.reward, model_cfg=cfg.model, model_path=folder)
        per_iteration = []
        try:
            for it in range(args.iterations):
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                m = trainer.iteration(it)
                row = {"iteration": it, "seconds": round(time.perf_counter() - t0, 2),
                       "rollout_tokens_per_s": round(m["perf/rollout_tokens_per_s"], 1),
                       "completion_mean_length": round(m["completions/mean_length"], 1),
                       "pi_step": m.get("pipo/active", 0.0), "loss": m["loss/policy"]}
                if cuda:
                    free, total = torch.cuda.mem_get_info()
                    row.update(torch_peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                               device_used_gib=round((total - free) / 2**30, 2))
                per_iteration.append(row)
                print(json.dumps(row), flush=True)
        finally:
            trainer.close()
    result = {"shape": args.shape, "engine": args.engine, "device": torch.cuda.get_device_name() if cuda else "cpu",
              "prompts_per_iteration": cfg.rl.prompts_per_iteration, "num_generations": cfg.rl.num_generations,
              "max_completion_length": args.max_completion, "iterations": per_iteration}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
