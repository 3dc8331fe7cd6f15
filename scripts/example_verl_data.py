"""Write an answer-only dataset in verl's layout, standing in for your own (README: your model, your data).

Each row: `data_source`, `prompt` (chat messages: a system prompt and the question), `reward_model`
{style: rule, ground_truth: "42"} (the answer only, no worked solution), `ability`, `extra_info`.

    python scripts/example_verl_data.py data/my_train.parquet --rows 64
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import pandas as pd

SYSTEM = "You are a careful calculator. Put the final answer in \\boxed{}."


def answer_only_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """n distinct two-number sums and differences with their answers."""
    rng, rows, seen = random.Random(seed), [], set()
    while len(rows) < n:
        a, b, op = rng.randint(10, 99), rng.randint(10, 99), rng.choice("+-")
        if (a, b, op) in seen:
            continue
        seen.add((a, b, op))
        rows.append({"data_source": "arithmetic",
                     "prompt": [{"role": "system", "content": SYSTEM},
                                {"role": "user", "content": f"What is {a} {op} {b}?"}],
                     "reward_model": {"style": "rule", "ground_truth": str(a + b if op == "+" else a - b)},
                     "ability": "arithmetic",
                     "extra_info": {"index": len(rows)}})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a .parquet file to write")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out.suffix != ".parquet":
        parser.error(f"{args.out}: the output must be a .parquet file")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    answer_only_rows(args.rows, args.seed).to_parquet(args.out, index=False)
    print(f"{args.out}: {args.rows} answer-only rows (verl layout)")


if __name__ == "__main__":
    main()
