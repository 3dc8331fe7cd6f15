"""Run under `accelerate launch --cpu --num_processes 2`: PIPO training in two gloo processes.

Each rank writes its per-iteration metrics and a weight checksum to OUT_DIR/rank{r}.json.
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from components.config import load_config  # noqa: E402
from components.model.factory import initial_policy  # noqa: E402
from components.rl import trainer as trainer_module  # noqa: E402
from components.rl.trainer import global_mean, train_rl  # noqa: E402
from tests.test_rl_trainer import TINY, parity_reward, sums  # noqa: E402


def main(out_dir: Path) -> None:
    acc = Accelerator(cpu=True)
    rank = acc.process_index
    # Each rank holds different rewards: the global mean must use both (5/8, not 1/4 or 1).
    local = torch.tensor([1.0, 0.0, 0.0, 0.0]) if rank == 0 else torch.tensor([1.0, 1.0, 1.0, 1.0])
    mean = global_mean(acc, local)

    trainer_module.score_batch = parity_reward
    cfg = load_config(overrides=TINY + ["rl.pipo.enabled=true", "rl.iterations=4"])
    model, tok = initial_policy(cfg.model, seed=0)
    model, result = train_rl(model, tok, sums(200, 1), cfg.rl, 0, acc)
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    history = [{k: v for k, v in h.items() if not k.startswith("perf/")} for h in result.history]
    (out_dir / f"rank{rank}.json").write_text(json.dumps({"mean": mean, "history": history, "checksum": checksum}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
