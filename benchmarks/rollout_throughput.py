"""Rollout throughput of one engine on the default policy: completion tokens per second.

Samples the RL batch shape (rl.prompts_per_iteration x rl.num_generations prompts from the RL
split) `--repeats` times after `--warmup` untimed rounds and prints the median. Run it once per engine,
each in the environment that has it:

  .venv/bin/python benchmarks/rollout_throughput.py --engine hf
  .venv-vllm/bin/python benchmarks/rollout_throughput.py --engine vllm

--busy N runs N single-threaded processes (a matmul loop) beside it, as on a shared machine;
--set rollout.decode_threads=2 fixes the hf engine's thread count (default: chosen by speed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from components.config import load_config  # noqa: E402
from components.model.chat import render_rows  # noqa: E402
from components.model.factory import load_policy  # noqa: E402
from components.rollout import make_engine  # noqa: E402
from components.infra.runtime import configure_threads, quiet_environment  # noqa: E402


# Another process's work on one core: single-threaded matmuls, forever (killed after the measurement).
BUSY_LOOP = "import torch\ntorch.set_num_threads(1)\na = torch.randn(256, 256)\nwhile True:\n    a = (a @ a).tanh()"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["hf", "vllm"], default="hf")
    parser.add_argument("--policy", default="models/sft")
    parser.add_argument("--prompts", default="data/prepared/rl.parquet")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (vLLM's CPU kernels warm up "
                                                             "over several calls)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    parser.add_argument("--busy", type=int, default=0, help="single-threaded busy processes beside the benchmark")
    args = parser.parse_args()
    quiet_environment()
    configure_threads()

    cfg = load_config(overrides=args.overrides + [f"rollout.engine={args.engine}"])
    model, tok = load_policy(args.policy, cfg.model.dtype)
    engine = make_engine(cfg.rollout, model, tok, args.policy, None, cfg.seed)
    rl = cfg.rl
    texts = render_rows(tok, pd.read_parquet(args.prompts), cfg.data.chat_template)  # as the rl stage does
    batch_prompts = [p for p in texts[: rl.prompts_per_iteration] for _ in range(rl.num_generations)]
    generator = torch.Generator().manual_seed(cfg.seed)
    rates, seconds = [], []
    load = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.busy)]
    try:
        for round_ in range(args.warmup + args.repeats):
            t0 = time.perf_counter()
            batch = engine.generate(batch_prompts, rl.max_completion_length, rl.temperature, rl.top_p,
                                    generator=generator)
            dt = time.perf_counter() - t0
            if round_ >= args.warmup:
                rates.append(batch.num_completion_tokens / dt)
                seconds.append(dt)
    finally:
        for proc in load:
            proc.kill()
    result = {"engine": args.engine, "policy": args.policy, "batch": len(batch_prompts), "busy": args.busy,
              "max_new_tokens": rl.max_completion_length, "threads": torch.get_num_threads(),
              "median_tokens_per_s": statistics.median(rates), "median_seconds": statistics.median(seconds),
              "rates": rates}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
