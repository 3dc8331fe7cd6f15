"""The reasoning-gym arithmetic source: format, correctness, disjointness, determinism."""

import json
import re

import pytest

from components.config import TaskConfig
from components.data import COLUMNS
from components.data.arithmetic import generate_splits, space_size
from components.data.worked_solution import format_prompt, format_solution

ONE_DIGIT = TaskConfig(name="chain_sum", min_terms=2, max_terms=2, min_digits=1, max_digits=1)
DEFAULT = TaskConfig(name="chain_sum", min_terms=2, max_terms=2, min_digits=1, max_digits=2)


def _value(prompt: str) -> int:
    """Evaluate "47+38-5=" by tokenizing, not eval()."""
    terms = re.findall(r"[+-]?\d+", prompt.rstrip("="))
    return sum(int(t) for t in terms)


def test_format_helpers():
    assert format_prompt("47 + 38") == "47+38="
    assert format_prompt("4 - 9 =") == "4-9="
    assert format_solution("47+38=", "85") == "7+8=15,4+3+1=8 \\boxed{85}"
    assert format_solution("42-17=", "25") == "42-17,12-7=5,4-1-1=2 \\boxed{25}"
    assert format_solution("17-42=", "-25") == "42-17,12-7=5,4-1-1=2 \\boxed{-25}"
    assert format_solution("3+4-2=", "5") == "3+4=7,7-2=5 \\boxed{5}"


def test_space_size_by_hand():
    assert space_size(ONE_DIGIT) == 10 * 10 * 2
    assert space_size(DEFAULT) == 10 * 10 * 2 + 90 * 90 * 2  # 16400
    three = TaskConfig(name="chain_sum", min_terms=2, max_terms=3, min_digits=1, max_digits=1)
    assert space_size(three) == 200 + 10**3 * 4


def test_rows_are_canonical_and_correct():
    splits = generate_splits(DEFAULT, num_sft=30, num_rl=50, num_eval=20, seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"sft": 30, "rl": 50, "eval": 20}
    for name, df in splits.items():
        assert list(df.columns) == COLUMNS
        assert (df["source"] == "reasoning_gym/chain_sum").all()
        for row in df.itertuples():
            assert re.fullmatch(r"\d+[+-]\d+=", row.prompt), row.prompt
            assert row.answer == str(_value(row.prompt))
            assert row.id.startswith(f"chain_sum-{name}-")
            meta = json.loads(row.metadata)
            assert format_prompt(meta["expression"]) == row.prompt
            assert row.solution == (format_solution(row.prompt, row.answer) if name == "sft" else None)
            assert row.messages is None  # a plain-text prompt: no chat messages
    assert splits["eval"]["id"].iloc[17] == "chain_sum-eval-000017"
    assert "-" in "".join(splits["rl"]["prompt"])  # subtraction is kept


def test_splits_disjoint_and_deduplicated_in_a_tiny_space():
    # 190 of 200 possible prompts: the generator repeats prompts constantly.
    splits = generate_splits(ONE_DIGIT, num_sft=60, num_rl=70, num_eval=60, seed=3)
    prompts = {k: list(v["prompt"]) for k, v in splits.items()}
    for name, values in prompts.items():
        assert len(values) == len(set(values)), name
    assert not set(prompts["eval"]) & set(prompts["sft"])
    assert not set(prompts["eval"]) & set(prompts["rl"])
    assert not set(prompts["sft"]) & set(prompts["rl"])
    ids = [i for v in splits.values() for i in v["id"]]
    assert len(ids) == len(set(ids)) == 190


def test_deterministic_by_seed():
    a = generate_splits(DEFAULT, 20, 40, 10, seed=7)
    b = generate_splits(DEFAULT, 20, 40, 10, seed=7)
    c = generate_splits(DEFAULT, 20, 40, 10, seed=8)
    for split in a:
        assert a[split].equals(b[split])
    assert list(a["rl"]["prompt"]) != list(c["rl"]["prompt"])
    # different seeds are not a shifted copy of one stream
    assert len(set(a["rl"]["prompt"]) & set(c["rl"]["prompt"])) < 10


def test_space_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match=r"only 200 distinct prompts.*70 \+ 70 \+ 61 = 201"):
        generate_splits(ONE_DIGIT, num_sft=70, num_rl=61, num_eval=70, seed=0)
