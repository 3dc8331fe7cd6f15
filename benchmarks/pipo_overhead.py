"""Per-iteration cost of PIPO over its base algorithm, measured side by side, with and without
skipping the zero-advantage rows (rl.skip_zero_advantage).

Four trainers start from the same policy with the same seed and settings: base and base+PIPO, each
with the skip on and off (with --joint a fifth: PIPO with rl.pipo.joint, skip on). Their iterations
are interleaved (one of each in turn) so machine noise hits all alike. Also timed on its own: one
forward+backward over a batch of the rollout's size, the only extra work PIPO should add. Prints
medians, PIPO's cost as a share of the base iteration, and the overhead beyond that forward/backward;
with --joint also grpo / pipo / pipo_joint side by side (medians and ratios to the base iteration; the
joint PI loss runs inside perf/update_seconds).

  python benchmarks/pipo_overhead.py [--policy models/sft] [--iterations 30] [--set rl.algorithm=dapo] [--joint]
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
    parser.add_argument("--joint", action="store_true", help="also time PIPO with rl.pipo.joint (skip on)")
    args = parser.parse_args()
    quiet_environment()
    configure_threads()

    arms = [(pipo, skip) for skip in (True, False) for pipo in (False, True)]
    arms += [("joint", True)] if args.joint else []
    configs = {(pipo, skip): load_config(overrides=args.overrides + [f"rl.pipo.enabled={str(bool(pipo)).lower()}",
                                                                     f"rl.pipo.joint={str(pipo == 'joint').lower()}",
                                                                     f"rl.skip_zero_advantage={str(skip).lower()}",
                                                                     "rl.guard.enabled=false"])
               for pipo, skip in arms}
    base_cfg = configs[(False, True)]
    if Path(args.policy).exists():
        model, tok = load_policy(args.policy)
    else:
        model, tok = initial_policy(base_cfg.model, base_cfg.seed)
    prompts = rendered_frame(tok, pd.read_parquet(args.prompts), base_cfg.data.chat_template)  # as the rl stage does
    acc = Accelerator(cpu=not torch.cuda.is_available())
    trainers = {key: RLTrainer(copy.deepcopy(model), tok, prompts, cfg.rl, cfg.seed, acc, rollout=cfg.rollout,
                               reward=cfg.reward, model_cfg=cfg.model) for key, cfg in configs.items()}
    min_history = configs[(True, True)].rl.pipo.effective_min_history
    times: dict = {key: {"iter": [], "pi": [], "update": [], "skipped": []} for key in trainers}
    for it in range(args.iterations):
        for key, trainer in trainers.items():
            m = trainer.iteration(it)
            if it < min_history:  # PIPO is not active yet: not compared
                continue
            times[key]["iter"].append(m["perf/iter_seconds"])
            times[key]["update"].append(m["perf/update_seconds"])
            times[key]["skipped"].append(m["perf/skipped_zero_adv_frac"])
            if key[0]:
                times[key]["pi"].append(m["perf/pi_seconds"])
    fb = fwd_bwd_seconds(trainers[(False, False)], torch.Generator().manual_seed(0))
    for trainer in trainers.values():
        trainer.close()
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    result = {"algorithm": base_cfg.rl.algorithm, "iterations_compared": len(times[(True, True)]["iter"]),
              "fwd_bwd_s": fb, "threads": torch.get_num_threads()}
    for skip, label in ((False, "no_skip"), (True, "skip")):
        base, pipo = med(times[(False, skip)]["iter"]), med(times[(True, skip)]["iter"])
        result[label] = {
            "base_iter_s": base, "pipo_iter_s": pipo, "pi_step_s": med(times[(True, skip)]["pi"]),
            "base_update_s": med(times[(False, skip)]["update"]),
            "skipped_zero_adv_frac": med(times[(False, skip)]["skipped"]),
            "pipo_cost_pct_of_base": 100 * (pipo / base - 1),
            "overhead_beyond_fwd_bwd_pct_of_base": 100 * (pipo - base - fb) / base,
        }
    result["pipo_cost_pct_of_base"] = result["skip"]["pipo_cost_pct_of_base"]  # the default (skip on)
    if args.joint:  # grpo, pipo (two steps) and pipo_joint (one), skip on
        arms = {"grpo": (False, True), "pipo": (True, True), "pipo_joint": ("joint", True)}
        base = med(times[(False, True)]["iter"])
        result["joint"] = {name: {"iter_s": med(times[key]["iter"]), "update_s": med(times[key]["update"]),
                                  "pi_s": med(times[key]["pi"]), "ratio_to_grpo": med(times[key]["iter"]) / base}
                           for name, key in arms.items()}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
