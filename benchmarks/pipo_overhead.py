"""Per-iteration cost of PIPO over its base algorithm, measured side by side.

Two trainers start from the same policy with the same seed and settings, one with PIPO; their
iterations are interleaved (base, pipo, base, pipo, ...) so machine noise hits both alike. Also
timed on its own: one forward+backward over a batch of the rollout's size, the only extra work PIPO
should add. Prints medians and the overhead beyond that forward/backward.

  python benchmarks/pipo_overhead.py [--policy models/sft] [--iterations 30] [--set rl.algorithm=dapo]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402

from components.config import load_config  # noqa: E402
from components.model.chat import rendered_frame  # noqa: E402
from components.model.factory import initial_policy, load_policy  # noqa: E402
from components.rl.logprobs import completion_logprobs  # noqa: E402
from components.rl.trainer import RLTrainer  # noqa: E402
from components.infra.runtime import configure_threads, quiet_environment  # noqa: E402


def fwd_bwd_seconds(trainer: RLTrainer, generator: torch.Generator, repeats: int = 5) -> float:
    b = trainer.engine.generate(trainer.texts[: trainer.cfg.prompts_per_iteration] * trainer.cfg.num_generations,
                                trainer.cfg.max_completion_length, trainer.cfg.temperature, generator=generator)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        lp, _ = completion_logprobs(trainer.model, b.prompt_ids, b.prompt_mask, b.completion_ids, b.completion_mask)
        (lp * b.completion_mask).sum().backward()
        trainer.model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="models/sft", help="HF folder to start from (default models/sft; "
                                                             "a fresh tiny model if it does not exist)")
    parser.add_argument("--prompts", default="data/prepared/rl.parquet")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    quiet_environment()
    configure_threads()

    base_cfg = load_config(overrides=args.overrides + ["rl.pipo.enabled=false"])
    pipo_cfg = load_config(overrides=args.overrides + ["rl.pipo.enabled=true"])
    if Path(args.policy).exists():
        model, tok = load_policy(args.policy)
    else:
        model, tok = initial_policy(base_cfg.model, base_cfg.seed)
    prompts = rendered_frame(tok, pd.read_parquet(args.prompts), base_cfg.data.chat_template)  # as the rl stage does
    acc = Accelerator(cpu=not torch.cuda.is_available())
    trainers = {
        "base": RLTrainer(copy.deepcopy(model), tok, prompts, base_cfg.rl, base_cfg.seed, acc,
                          rollout=base_cfg.rollout, reward=base_cfg.reward, model_cfg=base_cfg.model),
        "pipo": RLTrainer(copy.deepcopy(model), tok, prompts, pipo_cfg.rl, pipo_cfg.seed, acc,
                          rollout=pipo_cfg.rollout, reward=pipo_cfg.reward, model_cfg=pipo_cfg.model),
    }
    times: dict[str, list[float]] = {"base": [], "pipo": [], "pi_step": []}
    first_active = None
    for it in range(args.iterations):
        for name, trainer in trainers.items():
            m = trainer.iteration(it)
            if name == "pipo" and m.get("pipo/active"):
                first_active = it if first_active is None else first_active
                times["pi_step"].append(m["perf/pi_seconds"])
                times["pipo"].append(m["perf/iter_seconds"])
            elif name == "base" and it >= pipo_cfg.rl.pipo.history_needed:
                times["base"].append(m["perf/iter_seconds"])
    fb = fwd_bwd_seconds(trainers["base"], torch.Generator().manual_seed(0))
    base, pipo, pi = (statistics.median(times[k]) for k in ("base", "pipo", "pi_step"))
    result = {
        "algorithm": base_cfg.rl.algorithm,
        "iterations_compared": len(times["pipo"]),
        "base_iter_s": base, "pipo_iter_s": pipo, "pi_step_s": pi, "fwd_bwd_s": fb,
        "pipo_over_base_pct": 100 * (pipo / base - 1),
        "overhead_beyond_fwd_bwd_pct_of_base": 100 * (pipo - base - fb) / base,
        "target_met": pipo <= base + fb + 0.05 * base,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
