"""The default source: reasoning-gym arithmetic, deduplicated into disjoint sft/rl/eval splits."""

from __future__ import annotations

import hashlib
import json
import random

import pandas as pd

from components.config import TaskConfig
from components.data import COLUMNS
from components.data.worked_solution import format_prompt, format_solution


def space_size(task: TaskConfig) -> int:
    """Exact number of distinct chain_sum expressions the config can produce.

    reasoning-gym draws one digit count for all terms: 1-digit operands span 0..9, d-digit
    ones 10^(d-1)..10^d-1; each gap between terms is "+" or "-".
    """
    total = 0
    for terms in range(task.min_terms, task.max_terms + 1):
        for digits in range(task.min_digits, task.max_digits + 1):
            values = 10 if digits == 1 else 9 * 10 ** (digits - 1)
            total += values**terms * 2 ** (terms - 1)
    return total


def _rg_seed(task_name: str, seed: int) -> int:
    # reasoning-gym seeds item i with seed + i, so seeds 0 and 1 would give the same stream shifted
    # by one item; hashing decorrelates the runs of different seeds.
    return int.from_bytes(hashlib.sha256(f"{task_name}:{seed}".encode()).digest()[:4], "big")


def _unique_items(task: TaskConfig, needed: int, rg_seed: int) -> list[dict]:
    """First `needed`-or-more distinct items from the reasoning-gym stream, in stream order."""
    import reasoning_gym

    max_draws = 50 * needed + 100_000  # enough for a coupon-collector fill of a skewed space
    ds = reasoning_gym.create_dataset(
        task.name, min_terms=task.min_terms, max_terms=task.max_terms, min_digits=task.min_digits,
        max_digits=task.max_digits, size=max_draws, seed=rg_seed,
    )
    seen: dict[str, dict] = {}
    for idx in range(max_draws):
        item = ds[idx]
        prompt = format_prompt(item["metadata"]["expression"])
        if prompt not in seen:
            seen[prompt] = item
            if len(seen) == needed:
                return list(seen.values())
    raise ValueError(f"only {len(seen)} distinct {task.name} prompts in {max_draws} draws; {needed} needed")


def generate_splits(task: TaskConfig, num_sft: int, num_rl: int, num_eval: int, seed: int) -> dict[str, pd.DataFrame]:
    """Disjoint, deduplicated sft/rl/eval splits of canonical rows, deterministic in `seed`."""
    needed = num_eval + num_sft + num_rl
    available = space_size(task)
    if needed > available:
        raise ValueError(
            f"{task.name} with terms {task.min_terms}..{task.max_terms} and digits {task.min_digits}.."
            f"{task.max_digits} has only {available} distinct prompts, but num_eval + num_sft + num_rl = "
            f"{num_eval} + {num_sft} + {num_rl} = {needed} disjoint prompts were requested"
        )
    rg_seed = _rg_seed(task.name, seed)
    items = _unique_items(task, needed, rg_seed)
    # Shuffle before slicing so every split has the same mix: in stream order a small sub-space
    # (e.g. the 200 one-digit sums) is exhausted early and would all land in eval.
    random.Random(seed).shuffle(items)
    sizes = {"eval": num_eval, "sft": num_sft, "rl": num_rl}  # eval first, then sft, then rl
    splits, start = {}, 0
    for split, size in sizes.items():
        rows = []
        for i, item in enumerate(items[start : start + size]):
            prompt = format_prompt(item["metadata"]["expression"])
            meta = {**item["metadata"], "rg_seed": rg_seed}  # enough to regenerate the row
            rows.append({
                "id": f"{task.name}-{split}-{i:06d}",
                "source": f"reasoning_gym/{task.name}",
                "prompt": prompt,
                "answer": str(item["answer"]),
                "metadata": json.dumps(meta, sort_keys=True),
                "solution": format_solution(prompt, str(item["answer"])) if split == "sft" else None,
                "messages": None,  # a plain-text prompt
            })
        splits[split] = pd.DataFrame(rows, columns=COLUMNS)
        start += size
    return {s: splits[s] for s in ("sft", "rl", "eval")}
